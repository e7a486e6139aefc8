#!/usr/bin/env node
// Drives one page of headless Chromium (Debian's /usr/bin/chromium through
// playwright-core from tests/browser/node_modules) for the widget tests.
//
//   node page_driver.mjs [--timeout 120000] [--chromium PATH]
//
// Reads commands on stdin, one JSON object a line, and answers each on stdout:
//   {"id": 1, "op": "goto", "url": "..."}               -> {"id": 1, "ok": true, "result": null}
//   {"id": 2, "op": "wait", "selector": "...", "timeout": 30000, "state": "visible"}
//   {"id": 3, "op": "click" | "fill" | "press", "selector": "...", "text"/"key": "..."}
//   {"id": 3, "op": "type", "text": "..."}          keys into whatever has the focus
//   {"id": 4, "op": "eval", "expression": "() => document.title", "arg": null}
//   {"id": 5, "op": "waitFunction", "expression": "() => ...", "arg": null, "timeout": 30000}
//   {"id": 6, "op": "screenshot", "path": "/tmp/x.png", "selector": "..."}
//   {"id": 7, "op": "blank"}       an empty page on 127.0.0.1 (a secure context)
//   {"id": 8, "op": "addScript", "path": "/abs/path/lib.js"}      (a classic <script>)
//   {"id": 9, "op": "quit"}
// Errors answer {"id", "ok": false, "error"}. Browser console lines and page errors
// come as {"event": "console" | "pageerror", ...}. The whole run ends by itself
// after --timeout (event "timeout", exit status 2), and at end of stdin.
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// The browser harness's node_modules (npm ci in tests/browser) has playwright-core.
const require = createRequire(path.join(here, '..', 'browser', 'package.json'));
const { chromium } = require('playwright-core');

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

// An empty page on 127.0.0.1: a secure context (getUserMedia works) for scripts
// added with addScript, such as twilio-video.min.js.
function serveBlank() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><html><head><title>blank</title></head><body></body></html>');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function parseArgs(argv) {
  const opts = { timeout: 120000, chromium: process.env.CHROMIUM || '/usr/bin/chromium', width: 1280, height: 900 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--timeout') { opts.timeout = Number(argv[++i]); } else if (argv[i] === '--chromium') { opts.chromium = argv[++i]; } else if (argv[i] === '--size') {
      [opts.width, opts.height] = argv[++i].split('x').map(Number);
    } else { throw new Error(`unknown argument ${argv[i]}`); }
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
  let done = false;
  let blank = null;
  const finish = async (code) => {
    if (done) { return; }
    done = true;
    await browser.close().catch(() => {});
    if (blank) { blank.close(); }
    emit({ event: 'exit', code });
    process.exit(code);
  };
  setTimeout(() => { emit({ event: 'timeout' }); finish(2); }, opts.timeout);
  const context = await browser.newContext({ viewport: { width: opts.width, height: opts.height } });
  const page = await context.newPage();
  page.on('console', (msg) => emit({ event: 'console', type: msg.type(), text: msg.text() }));
  page.on('pageerror', (err) => emit({ event: 'pageerror', message: err.message }));

  const ops = {
    goto: (c) => page.goto(c.url, { waitUntil: 'domcontentloaded' }).then(() => null),
    blank: async () => {
      blank = blank || await serveBlank();
      await page.goto(`http://127.0.0.1:${blank.address().port}/`);
      return null;
    },
    wait: (c) => page.waitForSelector(c.selector, { timeout: c.timeout || 30000, state: c.state || 'visible' }).then(() => null),
    click: (c) => page.click(c.selector, { timeout: c.timeout || 30000 }).then(() => null),
    fill: (c) => page.fill(c.selector, c.text, { timeout: c.timeout || 30000 }).then(() => null),
    type: (c) => page.keyboard.type(c.text, { delay: 10 }).then(() => null),
    press: (c) => (c.selector ? page.press(c.selector, c.key) : page.keyboard.press(c.key)).then(() => null),
    eval: (c) => page.evaluate(new Function('arg', `return (${c.expression})(arg);`), c.arg ?? null),
    waitFunction: (c) => page.waitForFunction(new Function('arg', `return (${c.expression})(arg);`), c.arg ?? null, { timeout: c.timeout || 30000, polling: 200 }).then((handle) => handle.jsonValue()),
    addScript: (c) => page.addScriptTag({ path: c.path }).then(() => null),
    screenshot: async (c) => {
      if (c.selector) { await page.locator(c.selector).first().screenshot({ path: c.path }); } else { await page.screenshot({ path: c.path }); }
      return null;
    },
    quit: async () => { await finish(0); return null; },
  };

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) { continue; }
    const command = JSON.parse(line);
    const op = ops[command.op];
    try {
      if (!op) { throw new Error(`unknown op ${command.op}`); }
      emit({ id: command.id, ok: true, result: await op(command) });
    } catch (error) {
      emit({ id: command.id, ok: false, error: String(error && error.message || error) });
    }
  }
  await finish(0);
}

main().catch((err) => { emit({ event: 'driverError', message: String(err && err.stack || err) }); process.exit(1); });

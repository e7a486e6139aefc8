#!/usr/bin/env node
// Drives the real twilio-video.js (2.36, from node_modules) in headless Chromium
// against a jupyter_video signaling server and prints one JSON object per line
// on stdout: harness events ({"event": "connected", ...}) and browser console
// lines ({"event": "console", ...}).
//
//   node harness.mjs --token JWT --ws ws://127.0.0.1:8888/video/signaling --room lab \
//       [--audio] [--video] [--data] [--log-level debug] [--timeout 60000] \
//       [--script '[{"wait":2000},{"call":"publish","args":["video"]},{"wait":1000}]']
//
// Without --script it reads commands from stdin, one JSON object a line,
// e.g. {"call":"publish","args":["data"]}, {"call":"disconnect"}, {"call":"quit"};
// end of stdin quits. See README.md.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

function parseArgs(argv) {
  const opts = { audio: false, video: false, data: false, timeout: 60000, logLevel: 'warn' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => argv[++i];
    switch (arg) {
      case '--token': opts.token = next(); break;
      case '--ws': opts.wsServer = next(); break;
      case '--room': opts.name = next(); break;
      case '--audio': opts.audio = true; break;
      case '--video': opts.video = true; break;
      case '--data': opts.data = true; break;
      case '--dominant-speaker': opts.dominantSpeaker = true; break;
      case '--network-quality': opts.networkQuality = true; break;
      case '--log-level': opts.logLevel = next(); break;
      case '--timeout': opts.timeout = Number(next()); break;
      case '--script': opts.script = JSON.parse(next()); break;
      case '--chromium': opts.chromium = next(); break;
      default: throw new Error(`unknown argument ${arg}`);
    }
  }
  if (!opts.token || !opts.wsServer) {
    throw new Error('--token and --ws are required');
  }
  return opts;
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// 127.0.0.1 is a secure context, so getUserMedia works without TLS.
function serveStatic() {
  const files = {
    '/': [path.join(here, 'page.html'), 'text/html'],
    '/page.js': [path.join(here, 'page.js'), 'text/javascript'],
    '/twilio-video.min.js': [require.resolve('twilio-video/dist/twilio-video.min.js'), 'text/javascript'],
  };
  const server = http.createServer((req, res) => {
    if (req.url === '/favicon.ico') { res.writeHead(204); res.end(); return; }
    const entry = files[req.url.split('?')[0]];
    if (!entry) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': entry[1] });
    fs.createReadStream(entry[0]).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync',
  // Remote audio is played (page.js), so that its stats count decoded sound.
  '--autoplay-policy=no-user-gesture-required',
];

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const server = await serveStatic();
  const browser = await chromium.launch({
    executablePath: opts.chromium || process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  let done = false;
  const finish = async (code) => {
    if (done) { return; }
    done = true;
    emit({ event: 'exit' });
    await browser.close().catch(() => {});
    server.close();
    process.exit(code);
  };
  setTimeout(() => { emit({ event: 'timeout' }); finish(2); }, opts.timeout);

  const page = await browser.newPage();
  await page.exposeFunction('report', (obj) => emit(obj));
  page.on('console', (msg) => emit({ event: 'console', type: msg.type(), text: msg.text() }));
  page.on('pageerror', (err) => emit({ event: 'pageerror', message: err.message }));
  const { port } = server.address();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => !!window.harness);

  const call = (name, args) => page.evaluate(([n, a]) => window.harness[n](...a), [name, args || []]);
  const run = async (step) => {
    if (step.wait) { await new Promise((r) => setTimeout(r, step.wait)); }
    if (step.call === 'quit') { await finish(0); }
    if (step.call) { await call(step.call, step.args); }
  };

  await call('connect', [{
    token: opts.token, wsServer: opts.wsServer, name: opts.name,
    audio: opts.audio, video: opts.video, data: opts.data, logLevel: opts.logLevel,
    dominantSpeaker: opts.dominantSpeaker, networkQuality: opts.networkQuality,
  }]);

  if (opts.script) {
    for (const step of opts.script) { await run(step); }
    await finish(0);
    return;
  }
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim()) { await run(JSON.parse(line)); }
  }
  await finish(0);
}

main().catch((err) => { emit({ event: 'harnessError', message: String(err && err.stack || err) }); process.exit(1); });

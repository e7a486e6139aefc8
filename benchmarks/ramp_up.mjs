#!/usr/bin/env node
// Two twilio-video.js pages in one headless Chromium (tests/browser's
// node_modules: playwright-core and twilio-video 2.36): one publishes a
// 1280x720 30 fps fake camera, with or without VP8 simulcast, the other
// subscribes. Every --interval ms each page's own getStats() is sampled and
// printed as one JSON line: {"t": seconds since the publisher connected,
// "out": [per outbound layer: rid, width, height, fps, kbps (retransmissions
// included), resentKbps, limitation],
// "in": [per inbound video: width, height, fps, kbps, framesDecoded]}.
// benchmarks/ramp_up.py reads them.
//
//   node benchmarks/ramp_up.mjs --ws WS --room NAME --publisher JWT --subscriber JWT \
//       [--simulcast] [--seconds 30] [--interval 500]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const browserTests = path.join(here, '..', 'tests', 'browser');
const require = createRequire(path.join(browserTests, 'package.json'));
const { chromium } = require('playwright-core');

function parseArgs(argv) {
  const opts = { simulcast: false, seconds: 30, interval: 500 };
  for (let i = 0; i < argv.length; i++) {
    const next = () => argv[++i];
    switch (argv[i]) {
      case '--ws': opts.ws = next(); break;
      case '--room': opts.room = next(); break;
      case '--publisher': opts.publisher = next(); break;
      case '--subscriber': opts.subscriber = next(); break;
      case '--simulcast': opts.simulcast = true; break;
      case '--seconds': opts.seconds = Number(next()); break;
      case '--interval': opts.interval = Number(next()); break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  return opts;
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// The page: twilio-video's bundle and a few functions the driver calls. Its
// RTCPeerConnections are noted as they get a remote description (twilio-video
// keeps them to itself), as tests/browser/page.js does.
const PAGE = `<!doctype html><meta charset="utf-8">
<script src="/twilio-video.min.js"></script>
<script>
const pcs = [];
const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
RTCPeerConnection.prototype.setRemoteDescription = function (...args) {
  if (!pcs.includes(this)) { pcs.push(this); }
  return setRemote.apply(this, args);
};
const last = new Map();
window.ramp = {
  async join(token, ws, room, publish, simulcast) {
    const tracks = publish
      ? [await Twilio.Video.createLocalVideoTrack({ width: 1280, height: 720, frameRate: 30 })]
      : [];
    window.camera = tracks.length ? tracks[0].mediaStreamTrack.getSettings() : null;
    window.room = await Twilio.Video.connect(token, {
      name: room, wsServer: ws, iceServers: [], insights: false, tracks,
      audio: false, video: publish,
      preferredVideoCodecs: [{ codec: 'VP8', simulcast }],
    });
    window.room.on('trackSubscribed', (track) => {
      if (track.kind === 'video') { document.body.append(track.attach()); }
    });
    return window.room.sid;
  },
  // Rates since the previous call, per RTP stream (bytes -> kbit/s).
  async sample() {
    const out = [], inbound = [];
    const now = performance.now();
    for (const pc of pcs) {
      (await pc.getStats()).forEach((s) => {
        if (s.kind !== 'video' || (s.type !== 'outbound-rtp' && s.type !== 'inbound-rtp')) { return; }
        const bytes = s.type === 'outbound-rtp' ? s.bytesSent : s.bytesReceived;
        const resent = s.retransmittedBytesSent || 0;
        const before = last.get(s.id);
        last.set(s.id, { bytes, resent, now });
        const rate = (now2, then) => Math.round(8 * (now2 - then) / (now - before.now));
        const kbps = before ? rate(bytes, before.bytes) : 0;
        const common = { width: s.frameWidth || 0, height: s.frameHeight || 0, fps: s.framesPerSecond || 0, kbps };
        if (s.type === 'outbound-rtp') {
          out.push({
            ssrc: s.ssrc, rid: s.rid || null, active: s.active,
            limitation: s.qualityLimitationReason || null, encoder: s.encoderImplementation || null,
            resentKbps: before ? rate(resent, before.resent) : 0, ...common,
          });
        } else {
          inbound.push({ ssrc: s.ssrc, framesDecoded: s.framesDecoded || 0, ...common });
        }
      });
    }
    return { out, in: inbound };
  },
};
</script>`;

function serve() {
  const bundle = require.resolve('twilio-video/dist/twilio-video.min.js');
  const server = http.createServer((req, res) => {
    if (req.url === '/twilio-video.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      fs.createReadStream(bundle).pipe(res);
    } else if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(PAGE);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const server = await serve();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // tests/browser/harness.mjs's flags (importing it would run its main()).
    args: [
      '--headless', '--no-sandbox', '--disable-gpu',
      // The fake camera runs at 20 fps unless told (media/capture's fake device factory).
      '--use-fake-device-for-media-stream=fps=30', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync',
    ],
  });
  const url = `http://127.0.0.1:${server.address().port}/`;
  try {
    const pages = [];
    for (let i = 0; i < 2; i++) {
      const page = await browser.newPage();
      page.on('pageerror', (err) => emit({ event: 'pageerror', message: err.message }));
      await page.goto(url);
      pages.push(page);
    }
    const [publisher, subscriber] = pages;
    await subscriber.evaluate(([t, ws, r]) => window.ramp.join(t, ws, r, false, false),
      [opts.subscriber, opts.ws, opts.room]);
    const start = Date.now();
    await publisher.evaluate(([t, ws, r, s]) => window.ramp.join(t, ws, r, true, s),
      [opts.publisher, opts.ws, opts.room, opts.simulcast]);
    const camera = await publisher.evaluate(() => window.camera);
    emit({ event: 'connected', t: (Date.now() - start) / 1000, camera });
    while (Date.now() - start < opts.seconds * 1000) {
      await new Promise((r) => setTimeout(r, opts.interval));
      const [sent, received] = await Promise.all(pages.map((p) => p.evaluate(() => window.ramp.sample())));
      emit({ event: 'sample', t: (Date.now() - start) / 1000, out: sent.out, in: received.in });
    }
  } finally {
    await browser.close().catch(() => {});
    server.close();
  }
}

main().then(() => process.exit(0), (err) => {
  emit({ event: 'error', message: String(err && err.stack || err) });
  process.exit(1);
});

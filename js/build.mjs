// Bundles the widgets' front end (src/index.js + twilio-video.js 2.36) into one
// ES module that anywidget loads: ../jupyter_video/static/widget.js.
//   node build.mjs            one minified build
//   node build.mjs --watch    rebuild on change (with ANYWIDGET_HMR=1 in the kernel)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const options = {
  entryPoints: [path.join(here, 'src', 'index.js')],
  outfile: path.join(here, '..', 'jupyter_video', 'static', 'widget.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  sourcemap: false,
  loader: { '.css': 'text' },
  // twilio-video's es5 build reads process.env in a few places.
  define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' },
  legalComments: 'none',
  logLevel: 'info',
};

// The media socket transport for plain twilio-video.js pages:
//   import { WebSocketPeerConnection } from '.../websocket-peer-connection.js';
const transport = {
  ...options,
  entryPoints: [path.join(here, 'src', 'websocket_peer_connection.js')],
  outfile: path.join(here, '..', 'jupyter_video', 'static', 'websocket-peer-connection.js'),
};

if (process.argv.includes('--watch')) {
  const context = await esbuild.context({ ...options, minify: false });
  await context.watch();
} else {
  await Promise.all([esbuild.build(options), esbuild.build(transport)]);
}

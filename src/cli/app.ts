/**
 * @module cli/app
 * `tsserve-app --port 5000 --inference URL --management URL --metrics URL [--key-file FILE] [--max-upload BYTES]
 * [--drain-timeout SECONDS] [--forward-timeout SECONDS]`: the web app, in front of a running tsserve. SIGTERM, SIGINT or SIGHUP, at any
 * moment, stops it: it stops accepting, answers what it forwards (within the drain timeout), exits 0.
 */
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { createApp, DEFAULT_DRAIN_TIMEOUT, DEFAULT_FORWARD_TIMEOUT, DEFAULT_MAX_UPLOAD } from '../app/app.js';
import { listenProblem } from '../http/listen-check.js';
import { onStop } from './stop-signal.js';
import { exitTwoOnUsageError, parseBytes, parseHttpUrl, parsePort, parseSeconds } from './usage.js';

const program = exitTwoOnUsageError(new Command('tsserve-app'))
  .description('The web app: style transfer, classification, OCR, the models page and the live charts, over a running tsserve')
  .option('--port <port>', 'port to listen on', parsePort, 5000)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--inference <url>', 'tsserve inference API', parseHttpUrl, 'http://127.0.0.1:8080')
  .option('--management <url>', 'tsserve management API', parseHttpUrl, 'http://127.0.0.1:8081')
  .option('--metrics <url>', 'tsserve metrics API', parseHttpUrl, 'http://127.0.0.1:8082')
  .option('--key-file <file>', "tsserve's key_file.json, when token authorization is on", 'key_file.json')
  .option('--max-upload <bytes>', "largest upload: tsserve's max_request_size", parseBytes, DEFAULT_MAX_UPLOAD)
  .option(
    '--drain-timeout <seconds>',
    'on SIGTERM, SIGINT or SIGHUP, how long the requests in flight may take before they are answered 503 and the app exits 0',
    parseSeconds,
    DEFAULT_DRAIN_TIMEOUT,
  )
  .option(
    '--forward-timeout <seconds>',
    "how long a prediction forwarded to tsserve may wait for its answer to begin before it is answered 504: above tsserve's default_response_timeout",
    parseSeconds,
    DEFAULT_FORWARD_TIMEOUT,
  )
  .showHelpAfterError()
  .parse();

const opts = program.opts<{
  port: number;
  host: string;
  inference: string;
  management: string;
  metrics: string;
  keyFile: string;
  maxUpload: number;
  drainTimeout: number;
  forwardTimeout: number;
}>();
const keyFile = resolve(opts.keyFile);
const app = createApp({
  inference: opts.inference,
  management: opts.management,
  metrics: opts.metrics,
  keyFile: existsSync(keyFile) ? keyFile : undefined,
  maxUpload: opts.maxUpload,
  drainTimeout: opts.drainTimeout,
  forwardTimeout: opts.forwardTimeout,
});
try {
  await app.listen({ port: opts.port, host: opts.host });
  // Fastify names one of the addresses bound (127.0.0.1 for 0.0.0.0); the operator asked for the host.
  const { port } = app.server.address() as AddressInfo;
  console.log(`tsserve-app on http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}, calling ${opts.inference}`);
} catch (err) {
  // A port in use or not ours to bind is the user's to fix, not a stack trace to read.
  const problem = listenProblem((err as NodeJS.ErrnoException).code);
  if (!problem) throw err;
  console.error(`tsserve-app cannot listen on ${opts.host}:${opts.port}: ${problem}. Choose another with --port (or --host).`);
  process.exit(1);
}
// Also a stop asked for while it loaded or bound its port, which the process kept (stop-signal.ts).
onStop(() => {
  void app.close().then(() => process.exit(0));
});

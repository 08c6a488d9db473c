#!/usr/bin/env node
// Overload: far more clients than one worker can serve, against a short job queue. What it shows:
// refusals are 503s that come back at once (their latency is not the queue's), every request is
// answered, and the server's memory stays flat however long the flood lasts.
//
//   node bench/overload.mjs [--connections 256] [--seconds 15] [--queue 10]
//
// Starts `tsserve --foreground` (mnist, one worker) in a temporary folder on free 127.0.0.1 ports,
// floods /predictions/mnist with a digit PNG using autocannon, samples the server's RSS (whole
// process tree, from /proc) every 250 ms, then stops the server. Bounded by --seconds (autocannon
// ignores a duration when given a request count, so none is given).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, median, treeRssMb } from './lib.mjs';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { createArchive } from '../dist/src/archive/write.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    connections: { type: 'string', default: '256' },
    seconds: { type: 'string', default: '15' },
    queue: { type: 'string', default: '10' },
  },
});

const dir = mkdtempSync(join(tmpdir(), 'tsserve-overload-'));
const store = join(dir, 'model-store');
mkdirSync(store);
createArchive({
  modelName: 'mnist',
  version: '1.0',
  exportPath: store,
  force: true,
  serializedFile: join(ROOT, 'examples/mnist/mnist.onnx'),
  handler: join(ROOT, 'examples/mnist/mnist_handler.ts'),
});
const [inf, mgmt, met] = [await freePort(), await freePort(), await freePort()];
writeFileSync(
  join(dir, 'config.properties'),
  [
    `inference_address=http://127.0.0.1:${inf}`,
    `management_address=http://127.0.0.1:${mgmt}`,
    `metrics_address=http://127.0.0.1:${met}`,
    'default_workers_per_model=1',
    `job_queue_size=${opts.queue}`,
  ].join('\n'),
);
const server = spawn(
  process.execPath,
  [join(ROOT, 'bin/tsserve.js'), '--start', '--foreground', '--ncs', '--model-store', 'model-store', '--models', 'mnist=mnist.mar', '--disable-token-auth'],
  {
    cwd: dir,
    env: { ...process.env, TMPDIR: dir },
    stdio: process.env.BENCH_DEBUG ? 'inherit' : 'ignore',
  },
);

try {
  await waitUntilServing(`http://127.0.0.1:${inf}/predictions/mnist`);
  const body = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
  const rss = [];
  const sampler = setInterval(() => rss.push(treeRssMb(server.pid)), 250);
  rss.push(treeRssMb(server.pid));
  const statuses = {};
  const latencies = { 200: [], 503: [] };
  const result = await autocannon({
    url: `http://127.0.0.1:${inf}/predictions/mnist`,
    method: 'POST',
    body,
    headers: { 'content-type': 'image/png' },
    connections: Number(opts.connections),
    duration: Number(opts.seconds),
    timeout: 30,
    setupClient(client) {
      let sentAt = 0;
      client.on('request', () => {
        sentAt = performance.now();
      });
      client.on('response', (status) => {
        statuses[status] = (statuses[status] ?? 0) + 1;
        latencies[status]?.push(performance.now() - sentAt);
      });
    },
  });
  clearInterval(sampler);
  rss.push(treeRssMb(server.pid));

  const third = Math.floor(rss.length / 3);
  console.log(`overload: ${opts.connections} connections, ${opts.seconds} s, one mnist worker, job_queue_size ${opts.queue}`);
  console.log(`  answers by status: ${JSON.stringify(statuses)}; errors (no answer) ${result.errors}, timeouts ${result.timeouts}`);
  for (const s of ['200', '503']) console.log(`  ${s}: p50 ${pct(latencies[s], 50)} ms, p99 ${pct(latencies[s], 99)} ms`);
  console.log(
    `  server RSS (process tree) MB: before ${rss[0]}, median of first third ${median(rss.slice(1, third))}, ` +
      `median of last third ${median(rss.slice(-third))}, max ${Math.max(...rss)}`,
  );
} finally {
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}

async function waitUntilServing(url) {
  const body = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(url, { method: 'POST', body }).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('tsserve did not start serving within 30 s');
}

function pct(values, p) {
  if (values.length === 0) return '-';
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))].toFixed(1);
}

#!/usr/bin/env node
// Start-up and idle memory, as a user meets them:
//   node bench/startup.mjs [--runs 5]
// Each run: `tsserve --start --foreground --models mnist=mnist.mar` (one worker) in a fresh
// temporary folder, timed from spawn until the first /predictions/mnist answers 200 (requests
// are retried every 10 ms meanwhile); then, idle for 2 s, the RSS of the server and its worker
// (process tree, /proc). Medians over the runs.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, median, treeRssMb } from './lib.mjs';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const digit = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
const firstAnswers = [];
const rss = [];

for (let run = 0; run < Number(values.runs); run++) {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-startup-'));
  mkdirSync(join(dir, 'model-store'));
  copyFileSync(join(ROOT, 'model-store/mnist.mar'), join(dir, 'model-store/mnist.mar'));
  const port = await freePort();
  writeFileSync(join(dir, 'config.properties'), [
    `inference_address=http://127.0.0.1:${port}`, `management_address=http://127.0.0.1:${await freePort()}`,
    `metrics_address=http://127.0.0.1:${await freePort()}`, 'default_workers_per_model=1',
  ].join('\n'));
  const started = performance.now();
  const server = spawn(process.execPath, [join(ROOT, 'bin/tsserve.js'), '--start', '--foreground', '--ncs',
    '--model-store', 'model-store', '--models', 'mnist=mnist.mar', '--disable-token-auth'],
  { cwd: dir, env: { ...process.env, TMPDIR: dir }, stdio: 'ignore' });
  try {
    for (let i = 0; i < 3000; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/predictions/mnist`, { method: 'POST', body: digit }).catch(() => undefined);
      if (res?.status === 200 && (await res.text()) === '7') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    firstAnswers.push(performance.now() - started);
    await new Promise((r) => setTimeout(r, 2000));
    rss.push(treeRssMb(server.pid));
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`start to first mnist prediction: median ${median(firstAnswers).toFixed(0)} ms (runs: ${firstAnswers.map((v) => v.toFixed(0)).join(', ')})`);
console.log(`idle RSS, server + 1 worker: median ${median(rss)} MB (runs: ${rss.join(', ')})`);

#!/usr/bin/env node
// Start-up and idle memory, as a user meets them:
//   node bench/startup.mjs [--runs 5]
// Each run: `tsserve --start --foreground --models mnist=mnist.mar` (one worker) in a fresh
// temporary folder, timed from spawn until the first /predictions/mnist answers 200 (requests
// are retried every 10 ms meanwhile); then the RSS of the server and its worker (process tree,
// /proc) after 2 s and after 10 s of idling (V8 shrinks an idle heap after a few seconds), and
// the tree's PSS at 10 s (shared pages counted once). Medians over the runs.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, median, treePssMb, treeRssMb } from './lib.mjs';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const digit = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
const firstAnswers = [];
const rss = { at2s: [], at10s: [], pssAt10s: [] };

for (let run = 0; run < Number(values.runs); run++) {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-startup-'));
  mkdirSync(join(dir, 'model-store'));
  copyFileSync(join(ROOT, 'model-store/mnist.mar'), join(dir, 'model-store/mnist.mar'));
  const port = await freePort();
  writeFileSync(
    join(dir, 'config.properties'),
    [
      `inference_address=http://127.0.0.1:${port}`,
      `management_address=http://127.0.0.1:${await freePort()}`,
      `metrics_address=http://127.0.0.1:${await freePort()}`,
      'default_workers_per_model=1',
    ].join('\n'),
  );
  const started = performance.now();
  const server = spawn(
    process.execPath,
    [join(ROOT, 'bin/tsserve.js'), '--start', '--foreground', '--ncs', '--model-store', 'model-store', '--models', 'mnist=mnist.mar', '--disable-token-auth'],
    { cwd: dir, env: { ...process.env, TMPDIR: dir }, stdio: 'ignore' },
  );
  try {
    for (let i = 0; i < 3000; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/predictions/mnist`, { method: 'POST', body: digit }).catch(() => undefined);
      if (res?.status === 200 && (await res.text()) === '7') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    firstAnswers.push(performance.now() - started);
    await new Promise((r) => setTimeout(r, 2000));
    rss.at2s.push(treeRssMb(server.pid));
    await new Promise((r) => setTimeout(r, 8000));
    rss.at10s.push(treeRssMb(server.pid));
    rss.pssAt10s.push(treePssMb(server.pid));
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`start to first mnist prediction: median ${median(firstAnswers).toFixed(0)} ms (runs: ${firstAnswers.map((v) => v.toFixed(0)).join(', ')})`);
const report = (what, values) => console.log(`${what}, server + 1 worker: median ${median(values)} MB (runs: ${values.join(', ')})`);
report('RSS idle 2 s', rss.at2s);
report('RSS idle 10 s', rss.at10s);
report('PSS idle 10 s', rss.pssAt10s);

#!/usr/bin/env node
// Does a real Prometheus, scraping tsserve under load, tell the p99 the clients saw?
//
//   node bench/prometheus-p99.mjs [--rate 150] [--seconds 40] [--scrape 1s]
//
// Serves model-store/mnist.mar (`tsserve --start`, default settings, from a temporary folder on
// free 127.0.0.1 ports), starts Debian's `prometheus` (apt-get install prometheus) on 127.0.0.1
// scraping its /metrics every --scrape, and sends --rate predictions a second for --seconds with
// the open-loop generator (raw-client.mjs: arrivals at a fixed rate, whatever the answers do),
// timing each answer itself. Then it asks Prometheus
//   histogram_quantile(0.99, sum by (le) (increase(ts_request_seconds_bucket{model_name="mnist"}[<load>])))
// and compares it with the generator's own p99 of the same requests: histogram_quantile can only
// say which bucket the p99 fell in (interpolating inside it), so the check is that both fall in
// the same bucket of ts_request_seconds or in neighbouring ones. The generator's time includes
// what the server's does not (the request's bytes on the loopback, its parsing before it is a
// job, the answer's way back), which on this machine is a fraction of a millisecond.
// Exits 1 when the two are further apart than one bucket.
import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SECONDS_BUCKETS } from '../dist/src/metrics/registry.js';
import { atFixedRate, freePort, percentile, sorted, userServer } from './lib.mjs';
import { RawClient, rawPost } from './raw-client.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: { rate: { type: 'string', default: '150' }, seconds: { type: 'string', default: '40' }, scrape: { type: 'string', default: '1s' } },
});
const RATE = Number(opts.rate);
const SECONDS = Number(opts.seconds);
const BODY = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));

const server = await userServer('tsserve-prometheus-p99-');
copyFileSync(join(ROOT, 'model-store', 'mnist.mar'), join(server.store, 'mnist.mar'));
await server.start(['--models', 'mnist=mnist.mar']);
const metricsTarget = readFileSync(join(server.dir, 'config.properties'), 'utf8').match(/metrics_address=http:\/\/(\S+)/)[1];

const promDir = mkdtempSync(join(tmpdir(), 'tsserve-prometheus-'));
const promPort = await freePort();
writeFileSync(
  join(promDir, 'prometheus.yml'),
  `global:\n  scrape_interval: ${opts.scrape}\n  evaluation_interval: ${opts.scrape}\nscrape_configs:\n  - job_name: tsserve\n    static_configs:\n      - targets: ['${metricsTarget}']\n`,
);
const prometheus = spawn(
  'prometheus',
  [`--config.file=${join(promDir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(promDir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`],
  { stdio: 'ignore' },
);
const promUrl = `http://127.0.0.1:${promPort}`;

async function query(expr) {
  const res = await fetch(`${promUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
  const body = await res.json();
  if (body.status !== 'success') throw new Error(`Prometheus: ${JSON.stringify(body)}`);
  return body.data.result;
}

/** The index of the bucket of ts_request_seconds that `seconds` falls in (le is inclusive). */
const bucketOf = (seconds) => {
  const i = SECONDS_BUCKETS.findIndex((le) => seconds <= le);
  return i === -1 ? SECONDS_BUCKETS.length : i;
};
const bucketName = (i) => (i === 0 ? `(0, ${SECONDS_BUCKETS[0]}]` : `(${SECONDS_BUCKETS[i - 1]}, ${SECONDS_BUCKETS[i] ?? '+Inf'}]`);

let code = 1;
try {
  // Prometheus up and scraping tsserve.
  for (let i = 0; i < 300; i++) {
    const up = await query('up{job="tsserve"}').catch(() => []);
    if (up[0]?.value[1] === '1') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const client = new RawClient(server.inference, rawPost(server.inference, '/predictions/mnist', BODY, 'image/png'));
  for (let i = 0; i < 20; i++) await Promise.all(Array.from({ length: 10 }, () => client.send())); // warm-up, before the window
  await new Promise((r) => setTimeout(r, 3000));
  const uptimeBefore = execFileSync('uptime', { encoding: 'utf8' }).trim();
  const windowStart = Date.now();
  const { calls } = await atFixedRate(RATE, SECONDS, () => {
    const sent = performance.now();
    return client.send().then(
      ({ status }) => ({ status, ms: performance.now() - sent }),
      () => ({ status: 0, ms: performance.now() - sent }),
    );
  });
  const answers = await Promise.all(calls);
  client.close();
  const uptimeAfter = execFileSync('uptime', { encoding: 'utf8' }).trim();
  // Two scrapes after the last answer, then the window from the first arrival on.
  await new Promise((r) => setTimeout(r, 2500));
  const window = Math.ceil((Date.now() - windowStart) / 1000);
  const ok = answers.filter((a) => a.status === 200);
  const clientP99 = percentile(sorted(ok.map((a) => a.ms)), 99) / 1000;
  const [result] = await query(`histogram_quantile(0.99, sum by (le) (increase(ts_request_seconds_bucket{model_name="mnist"}[${window}s])))`);
  const [count] = await query(`sum(increase(ts_request_seconds_count{model_name="mnist"}[${window}s]))`);
  const promP99 = Number(result?.value[1]);
  const [c, p] = [bucketOf(clientP99), bucketOf(promP99)];
  console.log(
    `${RATE}/s for ${SECONDS} s: ${ok.length} answered 200, ${answers.length - ok.length} not; Prometheus counted ~${Number(count?.value[1]).toFixed(0)} in ${window} s`,
  );
  console.log(`generator p99  ${(clientP99 * 1000).toFixed(2)} ms  bucket ${bucketName(c)}`);
  console.log(`Prometheus p99 ${(promP99 * 1000).toFixed(2)} ms  bucket ${bucketName(p)}   histogram_quantile(0.99, ... ts_request_seconds_bucket ...)`);
  console.log(`uptime before: ${uptimeBefore}\nuptime after:  ${uptimeAfter}`);
  code = Math.abs(c - p) <= 1 ? 0 : 1;
  console.log(code === 0 ? `within one bucket (${Math.abs(c - p)} apart)` : `NOT within one bucket (${Math.abs(c - p)} apart)`);
} finally {
  const exited = new Promise((r) => prometheus.once('exit', r));
  prometheus.kill('SIGTERM');
  await server.stop();
  server.remove();
  await exited;
  rmSync(promDir, { recursive: true, force: true });
}
process.exit(code);

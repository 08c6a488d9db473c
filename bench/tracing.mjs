#!/usr/bin/env node
// What tracing costs, in two measures:
//   in process, no network: the CPU microseconds the front end spends on one prediction's
//             latency histograms (as with tracing off), and on its spans at 100% and at 10%
//             sampling (a batch of one: the request's, its queue's, the batch's and the worker's
//             three stages), made through metrics/tracing.ts and serialized as the OTLP exporter
//             serializes them (ProtobufTraceSerializer): stable measures on a shared machine;
//   servers   throughput of three servers side by side, on the same machine at the same time:
//     base     the code of --base-rev (default `main`), as it was before traces and histograms
//     off      this checkout, tracing off (the default)
//     sampled  this checkout, OTEL_TRACES_EXPORTER=otlp with OTEL_TRACES_SAMPLER=always_on: every
//              prediction's spans exported over OTLP/HTTP to a receiver in this process
//
//   node bench/tracing.mjs [--rounds 20] [--seconds 3] [--connections 16] [--base-rev main]
//
// Each server is `tsserve --start` of its checkout from a temporary folder (lib.mjs's
// userServer), serving model-store/mnist.mar with one worker and the archive's model-config.yaml
// (batches of up to 8, taken without waiting). The base checkout is `git archive <rev>` built
// with tsc beside this one's node_modules. Every round measures each server in turn (the order
// rotating) with a closed loop of --connections autocannon connections posting a digit PNG for
// --seconds, after a first round of warm-up that is not counted, and the CPU the server and its
// workers used for it (/proc). The report is each server's median answers/s, the median over
// rounds of its ratio to base in the same round (seconds apart, so the machine's load drifts
// less between them), and the same for CPU milliseconds per answer; with `uptime` before and
// after: this machine's two cores are shared, and other processes move a round's throughput by
// tens of percent.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { AlwaysOnSampler, InMemorySpanExporter, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { MetricsRegistry } from '../dist/src/metrics/registry.js';
import { Tracing } from '../dist/src/metrics/tracing.js';
import { childPids, cpuSeconds, median, userServer } from './lib.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '20' },
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '16' },
    'base-rev': { type: 'string', default: 'main' },
  },
});
const BODY = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();

/** The code of `rev`, built, in a temporary folder. */
function checkout(rev) {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-bench-base-'));
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${rev}" | tar -x -C "${dir}"`]);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], { stdio: 'inherit' });
  return dir;
}

/** An OTLP/HTTP receiver that takes every export and counts them. */
async function receiver() {
  const counts = { exports: 0, bytes: 0 };
  const server = createServer((req, res) => {
    req.on('data', (c) => {
      counts.bytes += c.length;
    });
    req.on('end', () => {
      counts.exports++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}/v1/traces`, counts, close: () => server.close() };
}

/** `tsserve --start` of the checkout at `root`, serving mnist with one worker. */
async function start(name, root, env) {
  const server = await userServer(`tsserve-bench-${name}-`, ['default_workers_per_model=1'], { root, env });
  copyFileSync(join(ROOT, 'model-store/mnist.mar'), join(server.store, 'mnist.mar'));
  await server.start(['--models', 'mnist=mnist.mar']);
  const pid = server.pid();
  return {
    name,
    url: `${server.inference}/predictions/mnist`,
    /** CPU seconds of the server and its workers so far. */
    cpu: () => cpuSeconds(pid) + childPids(pid).reduce((sum, child) => sum + cpuSeconds(child), 0),
    stop: async () => {
      await server.stop();
      server.remove();
    },
  };
}

/** A closed loop on `server` for `seconds`: answers per second, CPU ms per answer, answers not 200. */
async function measure(server, seconds) {
  const cpuBefore = server.cpu();
  const result = await autocannon({
    url: server.url,
    method: 'POST',
    body: BODY,
    headers: { 'content-type': 'image/png' },
    connections: Number(opts.connections),
    duration: seconds,
  });
  const cpuMs = ((server.cpu() - cpuBefore) * 1000) / Math.max(1, result.requests.total);
  return { perSecond: result.requests.total / seconds, cpuMs, errors: result.non2xx + result.errors + result.timeouts };
}

/**
 * CPU microseconds per prediction of making its spans, and of serializing them for OTLP, with
 * `sampler` deciding on requests without a traceparent.
 */
async function spanCost(sampler, predictions = 20_000, chunk = 200) {
  const exporter = new InMemorySpanExporter();
  const tracing = new Tracing({ otelTraces: true, otelTraceHeader: 'traceresponse' }, exporter, sampler, {});
  const model = { name: 'mnist', version: '1.0' };
  const headers = { 'content-type': 'image/png' };
  const id = () => randomBytes(8).toString('hex');
  const prediction = (i) => {
    const request = tracing.startRequest(model, `request-${i}`, headers, performance.now());
    const at = performance.now();
    const batch = tracing.startBatch(model, '9000', [request], at);
    const t = performance.timeOrigin + at;
    batch?.end(['preprocess', 'inference', 'postprocess'].map((name, k) => ({ name, start: t + k * 0.1, end: t + (k + 1) * 0.1, spanId: id() })));
    request.end(200);
  };
  let making = 0;
  let serializing = 0;
  for (let done = 0; done < predictions; done += chunk) {
    const began = process.cpuUsage();
    for (let i = 0; i < chunk; i++) prediction(done + i);
    making += cpuMicros(began);
    // What the batch processor holds goes to the in-memory exporter (a private field, in JavaScript's reach).
    await tracing.provider.forceFlush();
    const spans = exporter.getFinishedSpans();
    const serialized = process.cpuUsage();
    ProtobufTraceSerializer.serializeRequest(spans);
    serializing += cpuMicros(serialized);
    exporter.reset();
  }
  return { making: making / predictions, serializing: serializing / predictions };
}

function cpuMicros(since) {
  const { user, system } = process.cpuUsage(since);
  return user + system;
}

/** CPU microseconds per prediction of the latency histograms (a batch of one through three stages). */
function histogramCost(predictions = 200_000) {
  const metrics = new MetricsRegistry('prometheus');
  const t = performance.timeOrigin + performance.now();
  const stages = ['preprocess', 'inference', 'postprocess'].map((name, k) => ({ name, start: t + k * 0.1, end: t + (k + 1) * 0.1 }));
  const job = { arrivedAt: 1, dequeuedAt: 2, quiet: false };
  const began = process.cpuUsage();
  for (let i = 0; i < predictions; i++) {
    metrics.batchFormed('mnist', '1.0', [job]);
    metrics.stagesRan('mnist', '1.0', stages, 1);
    metrics.requestAnswered('mnist', '1.0', 0.002);
  }
  return cpuMicros(began) / predictions;
}

histogramCost(20_000); // warm-up
console.log(`the latency histograms of one prediction (5 observations, tracing off or on): ${histogramCost().toFixed(2)} µs of CPU`);
for (const [name, sampler] of [
  ['100% sampled', new AlwaysOnSampler()],
  ['10% sampled (traceidratio 0.1)', new TraceIdRatioBasedSampler(0.1)],
]) {
  await spanCost(sampler, 5000); // warm-up
  const cost = await spanCost(sampler);
  console.log(
    `spans of one prediction (6 when sampled, a batch of one), ${name}: ${cost.making.toFixed(1)} µs of CPU to make, ${cost.serializing.toFixed(1)} µs to serialize for OTLP`,
  );
}
console.log();

const base = checkout(opts['base-rev']);
const otlp = await receiver();
const servers = [
  await start('base', base, {}),
  await start('off', ROOT, {}),
  await start('sampled', ROOT, { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'always_on' }),
];
const rounds = [];
const before = uptime();
try {
  for (const s of servers) await measure(s, 3); // warm-up: V8's optimised code, onnxruntime's memory
  for (let round = 0; round < Number(opts.rounds); round++) {
    const order = servers.map((_, i) => servers[(i + round) % servers.length]);
    const results = {};
    for (const s of order) results[s.name] = await measure(s, Number(opts.seconds));
    rounds.push(results);
    const line = order.map(
      (s) =>
        `${s.name} ${results[s.name].perSecond.toFixed(0)}/s ${results[s.name].cpuMs.toFixed(3)} cpu-ms${results[s.name].errors ? ` (${results[s.name].errors} not 200)` : ''}`,
    );
    console.log(`round ${String(round + 1).padStart(2)}: ${line.join(', ')}`);
  }
} finally {
  for (const s of servers) await s.stop();
  otlp.close();
  rmSync(base, { recursive: true, force: true });
}
const after = uptime();
const pct = (ratio) => `${((ratio - 1) * 100).toFixed(2).padStart(6)}%`;
console.log(`\nmnist, 1 worker, batches up to 8, ${opts.connections} connections, ${opts.rounds} rounds of ${opts.seconds} s per server; medians:`);
console.log("           answers/s  vs base (median of rounds' ratios)   CPU ms/answer  vs base");
for (const { name } of servers) {
  const perSecond = median(rounds.map((r) => r[name].perSecond));
  const ratio = median(rounds.map((r) => r[name].perSecond / r.base.perSecond));
  const cpuMs = median(rounds.map((r) => r[name].cpuMs));
  const cpuRatio = median(rounds.map((r) => r[name].cpuMs / r.base.cpuMs));
  console.log(
    `  ${name.padEnd(8)} ${perSecond.toFixed(1).padStart(9)}  ${pct(ratio)}                               ${cpuMs.toFixed(3).padStart(9)}  ${pct(cpuRatio)}`,
  );
}
console.log(`OTLP exports received from sampled: ${otlp.counts.exports} requests, ${(otlp.counts.bytes / 1e6).toFixed(1)} MB`);
console.log(`uptime before: ${before}\nuptime after:  ${after}`);

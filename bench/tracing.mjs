#!/usr/bin/env node
// What tracing costs, in two measures:
//   in process, no network: the CPU microseconds the front end spends on one prediction's
//             latency histograms (as with tracing off), and on its spans at 100% and at 10%
//             sampling, in batches of 1 and of 8 (the request's and its queue's spans, the
//             batch's and the worker's three stages), made through metrics/tracing.ts up to the
//             body of an OTLP export, garbage collection included (the worker's stage ids are
//             made beforehand: the worker's CPU, not the front end's): stable measures on a
//             shared machine. --in-process-rev <rev> measures that revision's metrics/tracing.ts
//             the same way, in turns with this checkout's (one whose exporter is given the SDK's
//             spans serializes them as the OTLP exporter does, ProtobufTraceSerializer);
//   servers   throughput and CPU per answer of servers side by side, on the same machine at the
//             same time:
//     base     the code of --base-rev (default 2f7059e, main before traces and histograms)
//     before   with --before-rev (main, say): that code at 100% sampling, to compare a change
//              to tracing's cost in one run
//     off      this checkout, tracing off (the default)
//     sampled  this checkout, OTEL_TRACES_EXPORTER=otlp with OTEL_TRACES_SAMPLER=always_on: every
//              prediction's spans exported over OTLP/HTTP to a receiver in this process
//
//   node bench/tracing.mjs [--rounds 30] [--seconds 2] [--connections 16] [--base-rev 2f7059e] [--before-rev main]
//   node bench/tracing.mjs --in-process [--in-process-rev ba04979]     (the first measure only)
//
// Each server is `tsserve --start` of its checkout from a temporary folder (lib.mjs's
// userServer), serving model-store/mnist.mar with one worker and the archive's model-config.yaml
// (batches of up to 8, taken without waiting). Other checkouts are `git archive <rev>` built
// with tsc beside this one's node_modules. Every round measures each server in turn (the order
// rotating) with a closed loop of --connections autocannon connections posting a digit PNG for
// --seconds, after a first round of warm-up that is not counted, and the CPU the server and its
// workers used for it (/proc). Each round gives each server's ratio to base, seconds apart, so
// the machine's load drifts less between them than between runs; the report is the median over
// rounds of these ratios, for answers/s and for CPU per answer, with the quartiles and a 95%
// confidence interval of the median (the order statistics of a binomial(n, 1/2), no assumption
// of a distribution): a difference smaller than the interval's half-width is one this run
// cannot see. `uptime` before and after: this machine's two cores are shared, and other
// processes move a round's throughput by tens of percent.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { ExportResultCode } from '@opentelemetry/core';
import { AlwaysOnSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { MetricsRegistry } from '../dist/src/metrics/registry.js';
import { Tracing } from '../dist/src/metrics/tracing.js';
import { checkoutOf, childPids, cpuSeconds, median, otlpReceiver, sorted, userServer } from './lib.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '30' },
    seconds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '16' },
    'base-rev': { type: 'string', default: '2f7059e' },
    'before-rev': { type: 'string' },
    'in-process': { type: 'boolean', default: false },
    'in-process-rev': { type: 'string' },
  },
});
const BODY = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();

const checkout = (rev) => checkoutOf(ROOT, rev);

/** `tsserve --start` of the checkout at `root`, serving mnist with one worker. */
async function start(name, root, env) {
  const server = await userServer(`tsserve-bench-${name}-`, ['default_workers_per_model=1'], { root, env });
  copyFileSync(join(ROOT, 'model-store/mnist.mar'), join(server.store, 'mnist.mar'));
  await server.start(['--models', 'mnist=mnist.mar']);
  const pid = server.pid();
  return {
    name,
    url: `${server.inference}/predictions/mnist`,
    /** CPU seconds of the server (its front end) and of its workers so far. */
    cpu: () => ({ front: cpuSeconds(pid), workers: childPids(pid).reduce((sum, child) => sum + cpuSeconds(child), 0) }),
    stop: async () => {
      await server.stop();
      server.remove();
    },
  };
}

/** A closed loop on `server` for `seconds`: answers per second, CPU ms per answer (and the front end's alone), answers not 200. */
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
  const cpuAfter = server.cpu();
  const perAnswer = (seconds) => (seconds * 1000) / Math.max(1, result.requests.total);
  const frontMs = perAnswer(cpuAfter.front - cpuBefore.front);
  const cpuMs = frontMs + perAnswer(cpuAfter.workers - cpuBefore.workers);
  return { perSecond: result.requests.total / seconds, cpuMs, frontMs, errors: result.non2xx + result.errors + result.timeouts };
}

/**
 * CPU microseconds per prediction of its spans, in batches of `batchSize`, with `sampler`
 * deciding on requests without a traceparent, through `Tracing` (this checkout's, or another
 * revision's): in all (made, written or serialized for OTLP, the garbage they leave collected),
 * and the bytes of OTLP they come to. The exporter sends nothing; given the SDK's spans (a
 * revision before metrics/otlp-spans.ts), it serializes them as the OTLP exporter does.
 */
async function spanCost(Tracing, sampler, batchSize, predictions = 40_000) {
  let bytes = 0;
  let exported = 0;
  const exporter = {
    export(spans, done) {
      const body = Array.isArray(spans) ? ProtobufTraceSerializer.serializeRequest(spans) : spans.body;
      bytes += body.length;
      exported += Array.isArray(spans) ? spans.length : spans.count;
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: async () => {},
  };
  const tracing = new Tracing({ otelTraces: true, otelTraceHeader: 'traceresponse' }, exporter, sampler, {});
  const model = { name: 'mnist', version: '1.0' };
  const headers = { 'content-type': 'image/png' };
  const stageIds = Array.from({ length: (3 * predictions) / batchSize + 3 }, () => randomBytes(8).toString('hex'));
  let stage = 0;
  const batch = (first) => {
    const requests = [];
    for (let i = 0; i < batchSize; i++) requests.push(tracing.startRequest(model, `request-${first + i}`, headers, performance.now()));
    const at = performance.now();
    const trace = tracing.startBatch(model, '9000', requests, at);
    const t = performance.timeOrigin + at;
    trace?.end(['preprocess', 'inference', 'postprocess'].map((name, k) => ({ name, start: t + k * 0.1, end: t + (k + 1) * 0.1, spanId: stageIds[stage++] })));
    for (const r of requests) r.end(200);
  };
  const began = process.cpuUsage();
  for (let done = 0; done < predictions; done += batchSize) {
    batch(done);
    // The processor exports once the event loop turns, as between a server's requests.
    if (done % 64 < batchSize) await new Promise((resolve) => setImmediate(resolve));
  }
  await tracing.shutdown(() => {});
  return { all: cpuMicros(began) / predictions, bytes: bytes / predictions, spans: exported / predictions };
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
  const job = { arrivedAt: 1, dequeuedAt: 2, quiet: false, waitCounted: false };
  const began = process.cpuUsage();
  for (let i = 0; i < predictions; i++) {
    job.waitCounted = false;
    metrics.batchFormed('mnist', '1.0', [job]);
    metrics.stagesRan('mnist', '1.0', stages, 1);
    metrics.requestAnswered('mnist', '1.0', 0.002);
  }
  return cpuMicros(began) / predictions;
}

histogramCost(20_000); // warm-up
console.log(`the latency histograms of one prediction (5 observations, tracing off or on): ${histogramCost().toFixed(2)} µs of CPU`);
const tracings = [['this checkout', Tracing]];
if (opts['in-process-rev']) {
  const dir = checkout(opts['in-process-rev']);
  tracings.push([opts['in-process-rev'], (await import(join(dir, 'dist/src/metrics/tracing.js'))).Tracing]);
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
}
for (const [name, sampler] of [
  ['100% sampled', () => new AlwaysOnSampler()],
  ['10% sampled (traceidratio 0.1)', () => new TraceIdRatioBasedSampler(0.1)],
]) {
  for (const batchSize of [1, 8]) {
    const costs = new Map(tracings.map(([code]) => [code, []]));
    for (const [, T] of tracings) await spanCost(T, sampler(), batchSize, 10_000); // warm-up
    // In turns, so that the machine's load falls on each alike.
    for (let i = 0; i < 7; i++) for (const [code, T] of tracings) costs.get(code).push(await spanCost(T, sampler(), batchSize));
    for (const [code, runs] of costs) {
      const all = sorted(runs.map((c) => c.all));
      console.log(
        `spans of one prediction, ${name}, batches of ${batchSize} (${runs[0].spans.toFixed(2)} spans each, ${median(runs.map((c) => c.bytes)).toFixed(0)} bytes of OTLP), ${code}: ${median(all).toFixed(1)} µs of CPU in all (${all[0].toFixed(1)}-${all.at(-1).toFixed(1)} in ${all.length} runs)`,
      );
    }
  }
}
console.log();
if (opts['in-process']) process.exit(0);

/** The median of `values` with its quartiles and a 95% confidence interval (order statistics). */
function spread(values) {
  const v = sorted(values);
  const n = v.length;
  const half = 0.98 * Math.sqrt(n);
  const at = (rank) => v[Math.min(n - 1, Math.max(0, rank))];
  return {
    median: median(v),
    q1: at(Math.floor(n / 4)),
    q3: at(Math.floor((3 * n) / 4)),
    low: at(Math.floor(n / 2 - half) - 1),
    high: at(Math.ceil(n / 2 + half) - 1),
  };
}

const pct = (ratio) => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;
const described = ({ median: m, q1, q3, low, high }) => `${pct(m).padStart(7)} (quartiles ${pct(q1)} ${pct(q3)}; 95% CI ${pct(low)} ${pct(high)})`;

const sampledEnv = (otlp) => ({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'always_on' });
const checkouts = [checkout(opts['base-rev'])];
const receivers = [await otlpReceiver()];
const servers = [await start('base', checkouts[0], {})];
if (opts['before-rev']) {
  checkouts.push(checkout(opts['before-rev']));
  receivers.push(await otlpReceiver());
  servers.push(await start('before', checkouts[1], sampledEnv(receivers[1])));
}
servers.push(await start('off', ROOT, {}), await start('sampled', ROOT, sampledEnv(receivers[0])));
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
  for (const r of receivers) r.close();
  for (const dir of checkouts) rmSync(dir, { recursive: true, force: true });
}
const after = uptime();
console.log(`\nmnist, 1 worker, batches up to 8, ${opts.connections} connections, ${opts.rounds} rounds of ${opts.seconds} s per server`);
console.log(`base ${opts['base-rev']}${opts['before-rev'] ? `, before ${opts['before-rev']} sampled` : ''}, off and sampled this checkout`);
console.log(
  `medians: base ${median(rounds.map((r) => r.base.perSecond)).toFixed(0)} answers/s, ${median(rounds.map((r) => r.base.cpuMs)).toFixed(3)} CPU ms/answer (${median(rounds.map((r) => r.base.frontMs)).toFixed(3)} of it the front end's)`,
);
const names = servers.map((s) => s.name);
const pairs = [...names.filter((n) => n !== 'base').map((n) => [n, 'base']), ['sampled', 'off'], ...(opts['before-rev'] ? [['sampled', 'before']] : [])];
console.log("each round's ratio, its median over rounds:");
for (const [a, b] of pairs) {
  console.log(`  ${`${a} / ${b}`.padEnd(16)} answers/s ${described(spread(rounds.map((r) => r[a].perSecond / r[b].perSecond)))}`);
  console.log(`  ${''.padEnd(16)} CPU/answer ${described(spread(rounds.map((r) => r[a].cpuMs / r[b].cpuMs)))}`);
  console.log(`  ${''.padEnd(16)} front end's ${described(spread(rounds.map((r) => r[a].frontMs / r[b].frontMs)))}`);
}
for (const [i, r] of receivers.entries()) {
  console.log(`OTLP exports received from ${i === 0 ? 'sampled' : 'before'}: ${r.counts.exports} requests, ${(r.counts.bytes / 1e6).toFixed(1)} MB`);
}
console.log(`uptime before: ${before}\nuptime after:  ${after}`);

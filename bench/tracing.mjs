#!/usr/bin/env node
// What tracing costs, in two measures:
//   in process, no network: the CPU microseconds the front end spends on one prediction's
//             latency histograms (as with tracing off), and on its spans at 100% and at 10%
//             sampling, in batches of 1 and of 8 (the request's and its queue's spans, the
//             batch's and the worker's three stages), made through metrics/tracing.ts up to the
//             body of an OTLP export, garbage collection included (a revision whose worker made
//             the stages' span ids is given them made beforehand: its worker's CPU, not its
//             front end's; this one makes them in the front end, and counts them): stable
//             measures on a shared machine. --in-process-rev <rev> measures that revision's metrics/tracing.ts
//             the same way, in turns with this checkout's (one whose exporter is given the SDK's
//             spans serializes them as the OTLP exporter does, ProtobufTraceSerializer); and
//             the same spans (batches of 8) sent by the OTLP exporter's HTTP transport to a
//             receiver in another process, in exports of the default size and of 8192 spans:
//             what the export adds, the kernel's loopback TCP included;
//   servers   throughput and CPU per answer of servers side by side, on the same machine at the
//             same time, three ways:
//     closed loop  --connections connections each sending once answered, --rounds rounds of
//                  --seconds per server: throughput (answers/s) as the issue asks. One worker with
//                  batching under a closed loop is bimodal (rounds of 5,000 or 7,000 answers/s,
//                  batches of 4 or 7 whatever the code), so its per-round ratios swing ±20% and 30
//                  rounds cannot see 3%.
//     open loop    (the fixed rate) off and sampled (and before) only, --rate-rounds rounds of
//                  --rate-seconds per server: --rate answers/s, sent n at once (each of --batches' sizes), in time
//                  whatever the answers do (lib.mjs atFixedRate), to mnist registered again as
//                  mnist_b<n> with batch_size n and a max_batch_delay long enough for all n to
//                  arrive: every batch is of exactly n (the report says so), with tracing on or
//                  off, so what their CPU per answer differs by is tracing's work, not their
//                  batches'. CPU per answer: the kernel's run time of every thread of the front
//                  end and of its workers (/proc/<pid>/task/<tid>/schedstat, in ns), the first
//                  request to the last answer. Capacity where the server is CPU-bound (answers/s
//                  at saturation, its processes having the cores) is the inverse of CPU per
//                  answer: said as such, and for batches of 1 and of 8 (at saturation mnist's
//                  batches are 4-8). --rate 0: none.
//     closed batches  (--closed-batch <n>, a mode of its own: base, before, off and sampled, in
//                  turns, the order rotating, --rounds rounds of --seconds per server) throughput
//                  in a closed loop whose batches are all of exactly n, so that every cycle is the
//                  same work and its rounds are not bimodal: mnist registered again as mnist_b<n>
//                  with --closed-batch-workers workers (2), batch_size n and a max_batch_delay of
//                  1 s; n x workers x --closed-batch-groups (2) connections in groups of n, each
//                  group sending its n requests at once and again once all n are answered (a
//                  batch waits for n; at a round's end a group sends all n or none, so no batch of
//                  fewer waits out its delay into another server's round). Two groups a worker
//                  keep a full batch waiting for each (takeFullBatch's batch ahead), so neither
//                  worker idles while its answers go back and the next n come: the processes have
//                  both cores, throughput is capacity, and what tracing adds anywhere shows (one
//                  group a worker: ~4,700 answers/s against ~6,500 at load 3). Per round answers/s
//                  (first request to last answer) and CPU per answer (schedstat, as the open
//                  loop's); the report: per server the medians and the batches seen (ts_batch_size:
//                  how many answers short of n they came to in all, 0 when every batch was of n),
//                  answers not 200, and each round's ratios' medians with their 95% CI as below.
//                  Other processes' load lowers every server's rounds for seconds at a time: a run
//                  wants the machine quiet. Written to bench/results/<date>-<time>-tracing-closed-batch.txt
//                  too, with its command, commit and uptime.
//     base     the code of --base-rev (default 2f7059e, main before traces and histograms)
//     before   with --before-rev (main, say): that code at 100% sampling, to compare a change
//              to tracing's cost in one run
//     <rev>    each of --also-rev's revisions (a comma-separated list), tracing off, compared with
//              base as off is: where between base and this checkout a difference came, in one run
//     off      this checkout, tracing off (the default)
//     sampled  this checkout, OTEL_TRACES_EXPORTER=otlp with OTEL_TRACES_SAMPLER=always_on: every
//              prediction's spans exported over OTLP/HTTP to a receiver in this process
//
//   node bench/tracing.mjs [--rounds 30] [--seconds 2] [--connections 16] [--base-rev 2f7059e] [--before-rev main]
//                          [--batches 1,8] [--rate 600,2000] [--rate-rounds 100] [--rate-seconds 1] [--no-closed-loop]
//   node bench/tracing.mjs --in-process [--in-process-rev ba04979]     (the first measure only)
//   node bench/tracing.mjs --profile <path prefix> [--rounds 10] [--seconds 3]
//   node bench/tracing.mjs --gc [--rounds 6] [--seconds 3]
//   node bench/tracing.mjs --closed-batch 8 [--closed-batch-workers 2] [--closed-batch-groups 2] [--rounds 30] [--seconds 2] [--base-rev 2f7059e] [--before-rev main] [--also-rev a,b]
//
// --profile: off and sampled only (no base), in turns as above, under `perf record -g` (cpu-clock,
// every thread of each front end and its workers, --perf-basic-prof for V8's code) during the
// rounds alone; then, per answer, the microseconds of CPU each server's front end and workers
// spent in each function (self, and inclusive: the function and what it called) from the
// samples, sampled minus off, the largest differences first, with each server's mean batch size
// (ts_batch_size) and user and system CPU per answer (/proc): where tracing's cost goes, and
// whether the two servers ran the same batches. Leaves <prefix>.data and <prefix>.txt (the diff).
//
// --gc: off and sampled in turns as above, each front end counting its garbage collections
// (perf_hooks' gc entries, from a module NODE_OPTIONS imports: --trace-gc is not allowed there):
// scavenges per 1,000 answers, their pause per answer, mark-compacts, and the new space's size at
// the end, which V8 grows and shrinks as it goes and which sets how often a scavenge comes.
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
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { ExportResultCode } from '@opentelemetry/core';
import { AlwaysOnSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { MetricsRegistry } from '../dist/src/metrics/registry.js';
import { Tracing } from '../dist/src/metrics/tracing.js';
import { atFixedRate, checkoutOf, childPids, cpuSeconds, median, otlpReceiver, sorted, userServer } from './lib.mjs';
import { RawClient, rawPost } from './raw-client.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROOT_URL = new RegExp(`(file://)?${ROOT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/`, 'g');
const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '30' },
    seconds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '16' },
    'base-rev': { type: 'string', default: '2f7059e' },
    'before-rev': { type: 'string' },
    'also-rev': { type: 'string' },
    'in-process': { type: 'boolean', default: false },
    'in-process-rev': { type: 'string' },
    profile: { type: 'string' },
    gc: { type: 'boolean', default: false },
    batches: { type: 'string', default: '1,8' },
    rate: { type: 'string', default: '600,2000' },
    'rate-rounds': { type: 'string', default: '100' },
    'rate-seconds': { type: 'string', default: '1' },
    'closed-loop': { type: 'boolean', default: true },
    'closed-batch': { type: 'string' },
    'closed-batch-workers': { type: 'string', default: '2' },
    'closed-batch-groups': { type: 'string', default: '2' },
    together: { type: 'boolean', default: true },
  },
  allowNegative: true,
});
const BODY = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();

const checkout = (rev) => checkoutOf(ROOT, rev);
const sampledEnv = (otlp) => ({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'always_on' });

/** `tsserve --start` of the checkout at `root`, serving mnist with one worker. */
async function start(name, root, env) {
  if (opts.profile) env = { ...env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --perf-basic-prof` };
  const server = await startedServer(name, root, env);
  const pid = server.pid();
  // mnist again, once for each of --batches' sizes (--closed-batch's alone in that mode, with
  // its workers), as mnist_b<n>: batches of exactly n when requests come n at once (the open
  // loop's, --closed-batch's groups), its wait long enough for all n to arrive.
  const sizes = opts['closed-batch'] ? [Number(opts['closed-batch'])] : opts.batches.split(',').map(Number);
  const workers = opts['closed-batch'] ? Number(opts['closed-batch-workers']) : 1;
  const clients = new Map();
  for (const n of sizes) {
    const name = `mnist_b${n}`;
    const query = `url=mnist.mar&model_name=${name}&batch_size=${n}&max_batch_delay=${n === 1 ? 0 : 1000}&initial_workers=${workers}&synchronous=true`;
    const res = await fetch(`${server.management}/models?${query}`, { method: 'POST' });
    if (!res.ok) {
      const why = `registering ${name}: ${res.status} ${await res.text()}`;
      await server.stop();
      server.remove();
      throw new Error(why);
    }
    clients.set(n, new RawClient(server.inference, rawPost(server.inference, `/predictions/${name}`, BODY, 'image/png')));
  }
  return {
    name,
    pid,
    metrics: server.metrics,
    url: `${server.inference}/predictions/mnist`,
    /** Nanoseconds the kernel ran the server's (its front end's) threads and its workers' so far. */
    runNanos: () => ({ front: threadNanos(pid), workers: childPids(pid).reduce((sum, child) => sum + threadNanos(child), 0) }),
    /** For each batch size, the open loop's client: the same request, its bytes made once, on keep-alive sockets. */
    clients,
    /** CPU seconds of the server (its front end) and of its workers so far. */
    cpu: () => ({ front: cpuSeconds(pid), workers: childPids(pid).reduce((sum, child) => sum + cpuSeconds(child), 0) }),
    stop: async () => {
      for (const c of clients.values()) c.close();
      await server.stop();
      server.remove();
    },
  };
}

/**
 * `tsserve --start` on free ports; again on others (three times at most) when one was taken
 * meanwhile: other programs on this machine take ports too.
 */
async function startedServer(name, root, env) {
  for (let attempt = 1; ; attempt++) {
    const server = await userServer(`tsserve-bench-${name}-`, ['default_workers_per_model=1', 'enable_model_api=true', 'job_queue_size=1000'], { root, env });
    // Each checkout's own archive: its example handler may use what only its tsserve exports.
    copyFileSync(join(root, 'model-store/mnist.mar'), join(server.store, 'mnist.mar'));
    try {
      await server.start(['--models', 'mnist=mnist.mar']);
      return server;
    } catch (err) {
      server.remove();
      if (attempt === 3 || !String(err.stderr).includes('in use')) throw err;
    }
  }
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
 * Nanoseconds the kernel has run `pid`'s threads so far (each /proc/<pid>/task/<tid>/schedstat: exact,
 * where /proc/<pid>/stat counts 10 ms ticks, 1% of a one-second round); 0 once it has ended.
 */
function threadNanos(pid) {
  let ns = 0;
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        /* the thread ended */
      }
    }
  } catch {
    /* the process ended */
  }
  return ns;
}

/**
 * `rate` predictions a second on `server` for `seconds`, `batch` requests at once to mnist_b<batch>
 * (batches of exactly that size), each group sent at its time whatever the answers do (the open
 * loop): the CPU µs per answer of the server's front end and workers (from the first request to
 * the last answer), the front end's alone, the mean batch size (from /metrics, read outside that
 * span: all of the server's models, the closed loop's mnist idle meanwhile), answers not 200, and
 * how late the generator fell behind.
 */
async function atRate(server, rate, batch, seconds) {
  const client = server.clients.get(batch);
  const batchesBefore = await batchSizes(server);
  const before = server.runNanos();
  const tally = { errors: 0 };
  const run = await atFixedRate(rate / batch, seconds, () => Promise.all(Array.from({ length: batch }, () => sentCounted(client, tally))));
  await Promise.all(run.calls);
  const after = server.runNanos();
  const batchesAfter = await batchSizes(server);
  return {
    ...cpuPerAnswer(before, after, run.calls.length * batch),
    batch: (batchesAfter.sum - batchesBefore.sum) / Math.max(1, batchesAfter.count - batchesBefore.count),
    errors: tally.errors,
    lateMs: run.late,
  };
}

/** `client`'s request sent, an answer not 200 or a failed connection counted in `tally.errors`. */
function sentCounted(client, tally) {
  return client.send().then(
    ({ status }) => {
      if (status !== 200) tally.errors++;
    },
    () => tally.errors++,
  );
}

/** CPU µs per answer of a server's front end and workers (`runNanos` before and after), and the front end's alone. */
function cpuPerAnswer(before, after, answers) {
  const frontUs = (after.front - before.front) / 1e3 / answers;
  return { cpuUs: frontUs + (after.workers - before.workers) / 1e3 / answers, frontUs };
}

/**
 * --closed-batch's round on `server` for `seconds`: `groups` groups of n connections to
 * mnist_b<n>, each group sending its n requests at once and again once all n are answered. A
 * closed loop whose every batch is of exactly n: a group's n come together and a batch waits for
 * n; at the end a group sends all n or none, so no batch of fewer waits out its delay (and runs
 * in another server's round). Answers/s from the first request to the last answer, CPU µs per
 * answer (the kernel's run time of every thread, as atRate's), the batches and how many answers
 * short of n each they came to in all (from /metrics, read outside that span), answers not 200.
 */
async function inClosedBatches(server, n, groups, seconds) {
  const client = server.clients.get(n);
  const batchesBefore = await batchSizes(server);
  const tally = { errors: 0 };
  let answers = 0;
  const before = server.runNanos();
  const began = performance.now();
  const group = async () => {
    while (performance.now() - began < seconds * 1000) {
      await Promise.all(Array.from({ length: n }, () => sentCounted(client, tally)));
      answers += n;
    }
  };
  await Promise.all(Array.from({ length: groups }, group));
  const elapsed = (performance.now() - began) / 1000;
  const after = server.runNanos();
  const batchesAfter = await batchSizes(server);
  const batches = batchesAfter.count - batchesBefore.count;
  return {
    perSecond: answers / elapsed,
    ...cpuPerAnswer(before, after, answers),
    batches,
    short: n * batches - (batchesAfter.sum - batchesBefore.sum),
    errors: tally.errors,
  };
}

/** The --closed-batch mode: see the header. */
async function closedBatches(n) {
  const { say, text } = transcript();
  say(
    `# node bench/tracing.mjs ${process.argv.slice(2).join(' ')}, at ${execFileSync('git', ['-C', ROOT, 'describe', '--always', '--dirty'], { encoding: 'utf8' }).trim()}, ${new Date().toISOString()}`,
  );
  const groups = Number(opts['closed-batch-workers']) * Number(opts['closed-batch-groups']);
  const { servers, receivers, stop } = await startServers(true);
  const rounds = [];
  const before = uptime();
  try {
    for (const s of servers) await inClosedBatches(s, n, groups, 3); // warm-up: V8's optimised code, onnxruntime's memory
    for (let round = 0; round < Number(opts.rounds); round++) {
      const order = rotated(servers, round);
      const results = {};
      for (const s of order) results[s.name] = await inClosedBatches(s, n, groups, Number(opts.seconds));
      rounds.push(results);
      const line = order.map((s) => {
        const r = results[s.name];
        const batch = (n * r.batches - r.short) / Math.max(1, r.batches);
        return `${s.name} ${r.perSecond.toFixed(0)}/s ${r.cpuUs.toFixed(1)} µs (front ${r.frontUs.toFixed(1)}) batch ${batch.toFixed(2)}${r.errors ? ` (${r.errors} not 200)` : ''}`;
      });
      say(`round ${String(round + 1).padStart(2)}: ${line.join(', ')}`);
    }
  } finally {
    await stop();
  }
  const after = uptime();
  closedBatchReport(
    say,
    n,
    groups,
    servers.map((s) => s.name),
    rounds,
  );
  say(`OTLP exports received from sampled: ${receivers[0].counts.exports} requests, ${(receivers[0].counts.bytes / 1e6).toFixed(1)} MB`);
  say(`uptime before: ${before}\nuptime after:  ${after}`);
  const file = join(ROOT, 'bench/results', `${new Date().toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', '-')}-tracing-closed-batch.txt`);
  writeFileSync(file, text());
  console.log(file);
}

function closedBatchReport(say, n, groups, names, all) {
  // A round with an answer not 200 had answers of another cost: left out.
  const rounds = all.filter((r) => Object.values(r).every((s) => s.errors === 0));
  say(
    `\nclosed loop in batches of exactly ${n} (mnist_b${n}: batch_size ${n}, max_batch_delay 1000 ms, ${opts['closed-batch-workers']} workers; ${n * groups} connections in ${groups} groups of ${n}, each group sending its ${n} again once all ${n} are answered), ${rounds.length} rounds of ${opts.seconds} s per server (${all.length - rounds.length} more left out: answers not 200)`,
  );
  for (const name of names) {
    const perSecond = spread(rounds.map((r) => r[name].perSecond));
    const med = (key) => median(rounds.map((r) => r[name][key]));
    const total = (key) => all.reduce((sum, r) => sum + r[name][key], 0);
    say(
      `  ${name.padEnd(8)} answers/s: median ${perSecond.median.toFixed(0)} (quartiles ${perSecond.q1.toFixed(0)} ${perSecond.q3.toFixed(0)}; 95% CI ${perSecond.low.toFixed(0)} ${perSecond.high.toFixed(0)}); ${med('cpuUs').toFixed(1)} µs of CPU an answer (${med('frontUs').toFixed(1)} the front end's); in all rounds ${total('batches')} batches, ${total('short')} answers short of ${n} in them, ${total('errors')} answers not 200`,
    );
  }
  say("  each round's ratio, its median over rounds:");
  for (const [a, b] of pairsOf(names)) {
    say(`    ${`${a} / ${b}`.padEnd(16)} answers/s   ${described(spread(rounds.map((r) => r[a].perSecond / r[b].perSecond)))}`);
    say(`    ${''.padEnd(16)} CPU/answer  ${described(spread(rounds.map((r) => r[a].cpuUs / r[b].cpuUs)))}`);
    say(`    ${''.padEnd(16)} front end's ${described(spread(rounds.map((r) => r[a].frontUs / r[b].frontUs)))}`);
  }
}

/**
 * CPU microseconds per prediction of its spans, in batches of `batchSize`, with `sampler`
 * deciding on requests without a traceparent, through `Tracing` (this checkout's, or another
 * revision's): in all (made, written or serialized for OTLP, the garbage they leave collected),
 * and the bytes of OTLP they come to. The exporter sends nothing; given the SDK's spans (a
 * revision before metrics/otlp-spans.ts), it serializes them as the OTLP exporter does.
 */
async function spanCost(Tracing, sampler, batchSize, predictions = 40_000, otlpEnv = undefined) {
  let bytes = 0;
  let exported = 0;
  // The stages' span ids a revision's worker made (before bacab68; since, the front end makes
  // them and ignores these), made beforehand: its worker's CPU, not its front end's.
  const stageIds = Array.from({ length: (3 * predictions) / batchSize + 3 }, () => randomBytes(8).toString('hex'));
  let stage = 0;
  const exporter = {
    export(spans, done) {
      const body = Array.isArray(spans) ? ProtobufTraceSerializer.serializeRequest(spans) : spans.body;
      bytes += body.length;
      exported += Array.isArray(spans) ? spans.length : spans.count;
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: async () => {},
  };
  const config = { otelTraces: true, otelTraceHeader: 'traceresponse' };
  // With `otlpEnv`, this checkout's exporter as the server makes it, sending to a receiver.
  const tracing = otlpEnv ? Tracing.fromConfig(config, { info() {}, warn() {} }, otlpEnv) : new Tracing(config, exporter, sampler, {});
  const model = { name: 'mnist', version: '1.0' };
  const headers = { 'content-type': 'image/png' };
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

if (opts.profile) {
  await profile(opts.profile);
  process.exit(0);
}
if (opts.gc) {
  await gcCounts();
  process.exit(0);
}
if (opts['closed-batch']) {
  await closedBatches(Number(opts['closed-batch']));
  process.exit(0);
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
await exportCost();
console.log();
if (opts['in-process']) process.exit(0);

/**
 * What the export adds: a prediction's spans in batches of 8 as above, sent by the OTLP
 * exporter's HTTP transport (as a server sends them) to a receiver in a process of its own
 * (its CPU not this one's), minus the same without it; exports of up to OTEL_BSP_MAX_EXPORT_BATCH_SIZE
 * spans (and MAX_EXPORT_BYTES), as many of them as the default's and as four times it.
 */
async function exportCost() {
  const receiver = await receiverProcess();
  // The exporter reads its endpoint from process.env (as OTLPTraceExporter does), the rest from `env`.
  process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = receiver.url;
  try {
    const env = (spans) => ({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.url,
      OTEL_TRACES_SAMPLER: 'always_on',
      ...(spans ? { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: String(spans), OTEL_BSP_MAX_QUEUE_SIZE: String(4 * spans) } : {}),
    });
    const kinds = [
      ['written, not sent', () => spanCost(Tracing, new AlwaysOnSampler(), 8)],
      ['sent, exports of the default size', () => spanCost(Tracing, undefined, 8, 40_000, env())],
      ['sent, exports of up to 8192 spans', () => spanCost(Tracing, undefined, 8, 40_000, env(8192))],
    ];
    const costs = new Map(kinds.map(([name]) => [name, []]));
    for (const [, run] of kinds) await run(); // warm-up
    const exports = new Map(kinds.map(([name]) => [name, 0]));
    for (let i = 0; i < 7; i++) {
      for (const [name, run] of kinds) {
        const before = (await receiver.counts()).exports;
        costs.get(name).push((await run()).all);
        exports.set(name, exports.get(name) + (await receiver.counts()).exports - before);
      }
    }
    for (const [name, runs] of costs) {
      const all = sorted(runs);
      console.log(
        `spans of one prediction, 100% sampled, batches of 8, ${name}: ${median(all).toFixed(2)} µs of CPU (${all[0].toFixed(2)}-${all.at(-1).toFixed(2)} in ${all.length} runs; ${exports.get(name) / all.length} exports a run)`,
      );
    }
  } finally {
    receiver.stop();
  }
}

/** An OTLP receiver (lib.mjs) in a child process: its URL, the exports it counted so far, a stop. */
async function receiverProcess() {
  const lib = new URL('./lib.mjs', import.meta.url).href;
  const code = `import { otlpReceiver } from ${JSON.stringify(lib)};
const r = await otlpReceiver();
console.log(r.url);
process.on('message', () => process.send(r.counts));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const url = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d).trim())));
  return {
    url,
    counts: () =>
      new Promise((resolve) => {
        child.once('message', resolve);
        child.send('counts');
      }),
    stop: () => child.kill(),
  };
}

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

function pct(ratio) {
  return `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;
}
function described({ median: m, q1, q3, low, high }) {
  return `${pct(m).padStart(7)} (quartiles ${pct(q1)} ${pct(q3)}; 95% CI ${pct(low)} ${pct(high)})`;
}

/**
 * The servers compared: base (`withBase`), before (--before-rev, sampled), off and sampled; the
 * OTLP receivers of the sampled ones (sampled's first), and `stop`, which stops the servers and
 * removes the checkouts.
 */
async function startServers(withBase) {
  const checkouts = withBase ? [checkout(opts['base-rev'])] : [];
  const receivers = [await otlpReceiver()];
  const servers = withBase ? [await start('base', checkouts[0], {})] : [];
  // More revisions, tracing off, each named by its revision: where between base and this checkout
  // a difference came, in one run.
  for (const rev of withBase && opts['also-rev'] ? opts['also-rev'].split(',') : []) {
    checkouts.push(checkout(rev));
    servers.push(await start(rev, checkouts.at(-1), {}));
  }
  if (opts['before-rev']) {
    checkouts.push(checkout(opts['before-rev']));
    receivers.push(await otlpReceiver());
    servers.push(await start('before', checkouts.at(-1), sampledEnv(receivers[1])));
  }
  servers.push(await start('off', ROOT, {}), await start('sampled', ROOT, sampledEnv(receivers[0])));
  const stop = async () => {
    for (const s of servers) await s.stop();
    for (const r of receivers) r.close();
    for (const dir of checkouts) rmSync(dir, { recursive: true, force: true });
  };
  return { servers, receivers, stop };
}

/** The ratios reported: each server's to base (when it ran), sampled's to off, and to before (when it ran). */
function pairsOf(names) {
  const toBase = names.includes('base') ? names.filter((n) => n !== 'base').map((n) => [n, 'base']) : [];
  return [...toBase, ['sampled', 'off'], ...(names.includes('before') ? [['sampled', 'before']] : [])];
}

/** `servers` in round `round`'s order: each first in turn. */
function rotated(servers, round) {
  return servers.map((_, i) => servers[(i + round) % servers.length]);
}

// The base revision serves the closed loop's comparison only.
const { servers, receivers, stop } = await startServers(opts['closed-loop']);
// --rate's rates go with --batches' sizes in order (one rate: for every size).
const rates = opts.rate.split(',').map(Number);
const cells =
  opts.rate === '0' ? [] : opts.batches.split(',').map((batch, i) => ({ rate: rates[Math.min(i, rates.length - 1)], batch: Number(batch), rounds: [] }));
const rounds = [];
const before = uptime();
try {
  for (const s of servers) await measure(s, 3); // warm-up: V8's optimised code, onnxruntime's memory
  if (opts['closed-loop']) await closedLoopRounds(rounds);
  for (const cell of cells) await fixedRateRounds(cell);
} finally {
  await stop();
}
const after = uptime();
const names = servers.map((s) => s.name);
const pairs = pairsOf(names);
if (opts['closed-loop']) closedLoopReport(rounds);
for (const cell of cells) fixedRateReport(cell);
for (const [i, r] of receivers.entries()) {
  console.log(`OTLP exports received from ${i === 0 ? 'sampled' : 'before'}: ${r.counts.exports} requests, ${(r.counts.bytes / 1e6).toFixed(1)} MB`);
}
console.log(`uptime before: ${before}\nuptime after:  ${after}`);

/** The closed loop's rounds: every server in turn, the order rotating, each for --seconds. */
async function closedLoopRounds(rounds) {
  for (let round = 0; round < Number(opts.rounds); round++) {
    const order = rotated(servers, round);
    const results = {};
    for (const s of order) results[s.name] = await measure(s, Number(opts.seconds));
    rounds.push(results);
    const line = order.map(
      (s) =>
        `${s.name} ${results[s.name].perSecond.toFixed(0)}/s ${results[s.name].cpuMs.toFixed(3)} cpu-ms${results[s.name].errors ? ` (${results[s.name].errors} not 200)` : ''}`,
    );
    console.log(`round ${String(round + 1).padStart(2)}: ${line.join(', ')}`);
  }
}

/**
 * The open loop's rounds at `rate`, in batches of `batch`: every server but base in turn, the
 * order rotating, each for --rate-seconds. Batches of the same size at the same rate whether
 * tracing is on or off (the report shows they were), so what their CPU per answer differs by is
 * tracing's work.
 */
async function fixedRateRounds({ rate, batch, rounds }) {
  const traced = servers.filter((s) => s.name !== 'base');
  for (const s of traced) await atRate(s, rate, batch, 1); // warm-up at this rate: V8's new space sized for it
  for (let round = 0; round < Number(opts['rate-rounds']); round++) {
    const order = rotated(traced, round);
    const results = {};
    if (opts.together) {
      // The same seconds for each: whatever else the machine runs then falls on them alike.
      const runs = await Promise.all(order.map((s) => atRate(s, rate, batch, Number(opts['rate-seconds']))));
      for (const [i, s] of order.entries()) results[s.name] = runs[i];
    } else for (const s of order) results[s.name] = await atRate(s, rate, batch, Number(opts['rate-seconds']));
    rounds.push(results);
    const line = order.map((s) => {
      const r = results[s.name];
      return `${s.name} ${r.cpuUs.toFixed(1)} µs (front ${r.frontUs.toFixed(1)}) batch ${r.batch.toFixed(2)}${r.errors ? ` (${r.errors} not 200)` : ''}${r.lateMs > 20 ? ` (${r.lateMs.toFixed(0)} ms late)` : ''}`;
    });
    console.log(`${rate}/s in ${batch}s, round ${String(round + 1).padStart(2)}: ${line.join(', ')}`);
  }
}

function closedLoopReport(rounds) {
  console.log(
    `\nclosed loop (throughput: answers/s of ${opts.connections} connections each sending once answered; CPU per answer from /proc/<pid>/stat's ticks)`,
  );
  console.log(`mnist, 1 worker, batches up to 8, ${opts.connections} connections, ${opts.rounds} rounds of ${opts.seconds} s per server`);
  console.log(`base ${opts['base-rev']}${opts['before-rev'] ? `, before ${opts['before-rev']} sampled` : ''}, off and sampled this checkout`);
  console.log(
    `medians: base ${median(rounds.map((r) => r.base.perSecond)).toFixed(0)} answers/s, ${median(rounds.map((r) => r.base.cpuMs)).toFixed(3)} CPU ms/answer (${median(rounds.map((r) => r.base.frontMs)).toFixed(3)} of it the front end's)`,
  );
  console.log("each round's ratio, its median over rounds:");
  for (const [a, b] of pairs) {
    console.log(`  ${`${a} / ${b}`.padEnd(16)} answers/s ${described(spread(rounds.map((r) => r[a].perSecond / r[b].perSecond)))}`);
    console.log(`  ${''.padEnd(16)} CPU/answer ${described(spread(rounds.map((r) => r[a].cpuMs / r[b].cpuMs)))}`);
    console.log(`  ${''.padEnd(16)} front end's ${described(spread(rounds.map((r) => r[a].frontMs / r[b].frontMs)))}`);
  }
}

function fixedRateReport({ rate, batch, rounds: all }) {
  // A round with refusals (a queue full when the generator, late, sent a burst) had answers of
  // another cost: left out.
  const rounds = all.filter((r) => Object.values(r).every((s) => s.errors === 0));
  console.log(
    `\nopen loop at ${rate} answers/s in batches of ${batch} (mnist_b${batch}), ${rounds.length} rounds of ${opts['rate-seconds']} s per server (${all.length - rounds.length} more left out: answers not 200) (CPU per answer: the kernel's run time of every thread of the front end and its workers)`,
  );
  const traced = names.filter((n) => n !== 'base');
  for (const n of traced) {
    const med = (key) => median(rounds.map((r) => r[n][key]));
    console.log(
      `  ${n.padEnd(8)} medians: ${med('cpuUs').toFixed(1)} µs of CPU an answer (${med('frontUs').toFixed(1)} the front end's), mean batch ${med('batch').toFixed(2)}`,
    );
  }
  console.log("  each round's ratio, its median over rounds:");
  for (const [a, b] of pairs.filter(([a, b]) => a !== 'base' && b !== 'base')) {
    const cpu = spread(rounds.map((r) => r[a].cpuUs / r[b].cpuUs));
    console.log(`    ${`${a} / ${b}`.padEnd(16)} CPU/answer ${described(cpu)}`);
    console.log(`    ${''.padEnd(16)} front end's ${described(spread(rounds.map((r) => r[a].frontUs / r[b].frontUs)))}`);
    console.log(
      `    ${''.padEnd(16)} capacity where CPU-bound (answers/s at saturation, 1 / CPU per answer): ${pct(1 / cpu.median)} (95% CI ${pct(1 / cpu.high)} ${pct(1 / cpu.low)})`,
    );
  }
}

/** Every descendant of `pid`: a front end's workers (and what they start). */
function descendants(pid) {
  const all = [];
  for (const stack = [pid]; stack.length > 0; ) {
    for (const child of childPids(stack.pop())) {
      all.push(child);
      stack.push(child);
    }
  }
  return all;
}

/** User and system CPU seconds of `pids` so far. */
function userSystem(pids) {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      user += Number(fields[11]) / 100;
      system += Number(fields[12]) / 100;
    } catch {
      /* ended */
    }
  }
  return { user, system };
}

/** ts_batch_size's sum and count on the server's /metrics, over its models. */
async function batchSizes(server) {
  const text = await (await fetch(`${server.metrics}/metrics`)).text();
  // Every model's line, summed.
  const value = (suffix) => [...text.matchAll(new RegExp(`^ts_batch_size_${suffix}\\{[^}]*\\} (\\S+)`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
  return { sum: value('sum'), count: value('count') };
}

/**
 * Where each frame of a `perf script` sample is: the function's name as perf resolved it (a JS
 * function's from the perf map: `JS:*name file:line`), the library's for native code it could not name.
 */
function frameName(line) {
  const m = /^\s*[0-9a-f]+ (.*) \(([^)]*)\)$/.exec(line);
  if (!m) return undefined;
  const symbol = m[1].replace(/\+0x[0-9a-f]+$/, '');
  if (symbol === '[unknown]') return `[${m[2].split('/').at(-1)}]`;
  // One name for a function whatever V8's tier (`JS:*'name`, `JS:+name` ...) and wherever the
  // server's temporary folder unpacked the model.
  return symbol
    .replace(/^JS:[*+^~']*/, 'JS:')
    .replace(ROOT_URL, '')
    .replace(/\/tmp\/tsserve-bench-[^/]+\/tsserve-models\/[^/]+\//, '<model>/');
}

/** The file of a JS function's name (`JS:name file:line:column`), or the name itself. */
function fileOf(name) {
  const m = /^JS:\S* (.*?):\d+:\d+$/.exec(name) ?? /^JS:(\S+):\d+:\d+$/.exec(name);
  return m ? m[1].replace(/^.*node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1') : name.startsWith('JS:') ? name : '(native)';
}

/** Samples of `perf script` per process: self (the top frame) and inclusive (each function once per sample) counts by function. */
function samplesByFunction(data) {
  const text = execFileSync('perf', ['script', '-i', data, '-F', 'pid,tid,period,ip,sym,dso'], {
    encoding: 'utf8',
    maxBuffer: 2 ** 31 - 1,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const byPid = new Map();
  for (const sample of text.split('\n\n')) {
    const lines = sample.split('\n').filter(Boolean);
    if (lines.length === 0) continue;
    const pid = Number(/^\s*(\d+)/.exec(lines[0])?.[1]);
    if (!byPid.has(pid)) byPid.set(pid, { samples: 0, self: new Map(), inclusive: new Map(), files: new Map() });
    const p = byPid.get(pid);
    p.samples++;
    const frames = lines.slice(1).map(frameName).filter(Boolean);
    const top = frames[0] ?? '[no frame]';
    p.self.set(top, (p.self.get(top) ?? 0) + 1);
    // The first JS function's file from the top: native code is charged to the JS that called it.
    const file = fileOf(frames.find((f) => f.startsWith('JS:')) ?? top);
    p.files.set(file, (p.files.get(file) ?? 0) + 1);
    for (const f of new Set(frames)) p.inclusive.set(f, (p.inclusive.get(f) ?? 0) + 1);
  }
  return byPid;
}

/** The counts of `pids`' samples, summed. */
function merged(byPid, pids) {
  const out = { samples: 0, self: new Map(), inclusive: new Map(), files: new Map() };
  for (const pid of pids) {
    const p = byPid.get(pid);
    if (!p) continue;
    out.samples += p.samples;
    for (const kind of ['self', 'inclusive', 'files']) for (const [f, n] of p[kind]) out[kind].set(f, (out[kind].get(f) ?? 0) + n);
  }
  return out;
}

/** The profile mode (--profile): see the header. */
async function profile(prefix) {
  const HZ = 1999;
  const receiver = await otlpReceiver();
  const servers = [];
  const { say, text } = transcript();
  try {
    servers.push(await start('off', ROOT, {}), await start('sampled', ROOT, sampledEnv(receiver)));
    for (const s of servers) await measure(s, 3); // warm-up
    const pidsOf = (s) => [s.pid, ...descendants(s.pid)];
    const pids = new Map(servers.map((s) => [s.name, { front: [s.pid], workers: descendants(s.pid) }]));
    const totals = new Map(
      servers.map((s) => [s.name, { answers: 0, front: userSystem([s.pid]), workers: userSystem(descendants(s.pid)), batches: undefined }]),
    );
    for (const s of servers) totals.get(s.name).batches = await batchSizes(s);
    const perf = spawnPerf(['record', '-e', 'cpu-clock', '-F', String(HZ), '-g', '-o', `${prefix}.data`, '-p', servers.flatMap(pidsOf).join(',')]);
    await new Promise((r) => setTimeout(r, 1000));
    say(`uptime before: ${uptime()}`);
    for (let round = 0; round < Number(opts.rounds); round++) {
      const order = round % 2 ? [...servers].reverse() : servers;
      const line = [];
      for (const s of order) {
        const r = await measure(s, Number(opts.seconds));
        totals.get(s.name).answers += r.perSecond * Number(opts.seconds);
        line.push(`${s.name} ${r.perSecond.toFixed(0)}/s ${r.cpuMs.toFixed(3)} cpu-ms`);
      }
      say(`round ${round + 1}: ${line.join(', ')}`);
    }
    perf.kill('SIGINT');
    await new Promise((r) => perf.on('exit', r));
    say(`uptime after: ${uptime()}`);
    for (const s of servers) {
      const t = totals.get(s.name);
      const front = userSystem([s.pid]);
      const workers = userSystem(descendants(s.pid));
      const batches = await batchSizes(s);
      const us = (seconds) => ((seconds * 1e6) / t.answers).toFixed(1);
      say(
        `${s.name}: ${t.answers} answers, mean batch ${((batches.sum - t.batches.sum) / (batches.count - t.batches.count)).toFixed(2)}; ` +
          `front end ${us(front.user - t.front.user)} µs user + ${us(front.system - t.front.system)} µs system per answer, ` +
          `workers ${us(workers.user - t.workers.user)} + ${us(workers.system - t.workers.system)}`,
      );
    }
    const byPid = samplesByFunction(`${prefix}.data`);
    for (const part of ['front', 'workers']) {
      const [off, sampled] = servers.map((s) => merged(byPid, pids.get(s.name)[part]));
      const perAnswer = (n, name) => (n * 1e6) / HZ / totals.get(name).answers;
      say(
        `\n${part === 'front' ? 'front end' : 'workers'}: ${perAnswer(off.samples, 'off').toFixed(1)} µs per answer off, ${perAnswer(sampled.samples, 'sampled').toFixed(1)} sampled (samples: ${off.samples}, ${sampled.samples})`,
      );
      for (const kind of ['files', 'self', 'inclusive']) {
        const names = new Set([...off[kind].keys(), ...sampled[kind].keys()]);
        const diffs = [...names].map((f) => {
          const a = perAnswer(off[kind].get(f) ?? 0, 'off');
          const b = perAnswer(sampled[kind].get(f) ?? 0, 'sampled');
          return { f, a, b, d: b - a };
        });
        diffs.sort((x, y) => Math.abs(y.d) - Math.abs(x.d));
        say(`  ${kind}, µs per answer: sampled - off (off, sampled), largest 40:`);
        for (const { f, a, b, d } of diffs.slice(0, 40))
          say(`    ${(d >= 0 ? '+' : '') + d.toFixed(2)}\t(${a.toFixed(2)}, ${b.toFixed(2)})\t${f.slice(0, 160)}`);
      }
    }
  } finally {
    for (const s of servers) await s.stop();
    receiver.close();
    writeFileSync(`${prefix}.txt`, text());
  }
}

/** `say` prints a line and keeps it; `text` is the lines kept, for a results file. */
function transcript() {
  const lines = [];
  return {
    say: (line) => {
      console.log(line);
      lines.push(line);
    },
    text: () => `${lines.join('\n')}\n`,
  };
}

/** What a server's processes import first in the --gc mode: its collections counted into GC_COUNT_DIR/<pid>.json. */
function gcCounter() {
  return `
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { writeFileSync } from 'node:fs';
import v8 from 'node:v8';
const counts = { scavenges: 0, scavengeMs: 0, markCompacts: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) {
      counts.scavenges++;
      counts.scavengeMs += e.duration;
    } else if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) counts.markCompacts++;
  }
}).observe({ entryTypes: ['gc'] });
const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
setInterval(() => writeFileSync(process.env.GC_COUNT_DIR + '/' + process.pid + '.json', JSON.stringify({ ...counts, newSpace: newSpace() })), 200).unref();
`;
}

/** The --gc mode: see the header. */
async function gcCounts() {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-bench-gc-'));
  const counter = join(dir, 'gc-counter.mjs');
  writeFileSync(counter, gcCounter());
  const counting = (env) => ({ ...env, GC_COUNT_DIR: dir, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${counter}` });
  const receiver = await otlpReceiver();
  const servers = [];
  const settle = () => new Promise((r) => setTimeout(r, 500));
  const read = (s) => JSON.parse(readFileSync(join(dir, `${s.pid}.json`), 'utf8'));
  try {
    servers.push(await start('off', ROOT, counting({})), await start('sampled', ROOT, counting(sampledEnv(receiver))));
    for (const s of servers) await measure(s, 3); // warm-up
    await settle();
    const first = new Map(servers.map((s) => [s.name, read(s)]));
    const answers = new Map(servers.map((s) => [s.name, 0]));
    console.log(`uptime before: ${uptime()}`);
    for (let round = 0; round < Number(opts.rounds); round++) {
      for (const s of round % 2 ? [...servers].reverse() : servers) {
        const r = await measure(s, Number(opts.seconds));
        answers.set(s.name, answers.get(s.name) + r.perSecond * Number(opts.seconds));
      }
    }
    await settle();
    console.log(`uptime after: ${uptime()}`);
    for (const s of servers) {
      const [a, b, n] = [first.get(s.name), read(s), answers.get(s.name)];
      console.log(
        `${s.name}: ${n} answers; front end: ${(((b.scavenges - a.scavenges) * 1000) / n).toFixed(2)} scavenges per 1,000 answers, ` +
          `${(((b.scavengeMs - a.scavengeMs) * 1000) / n).toFixed(1)} µs of scavenge pause an answer, ${b.markCompacts - a.markCompacts} mark-compacts, ` +
          `new space ${(b.newSpace / 2 ** 20).toFixed(0)} MB at the end`,
      );
    }
  } finally {
    for (const s of servers) await s.stop();
    receiver.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function spawnPerf(args) {
  return spawn('perf', args, { stdio: 'ignore' });
}

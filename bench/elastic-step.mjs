#!/usr/bin/env node
// Workers following the load (issue 33): an open-loop step from --low to --high requests/s on
// mnist (model-store/mnist.mar), as a user's traffic steps up, with the model's workers between
// min_worker and max_worker 4 (PUT /models/mnist?min_worker=..&max_worker=4). Twice:
//   min 1       --low/s for --low-seconds, then --high/s for --high-seconds, from one worker;
//   min 0 cold  the same from a model with no worker (stopped after the scale-down delay): the
//               first request starts one, and none may get an error;
//   cold step   (--runs ...,cold) min 0 with no --low phase: --high/s straight onto a model with
//               no worker, whose first worker starts with requests already waiting (how soon
//               more are added while it starts; the queue, job_queue_size, holds what it can).
// For each: when a worker was added after the step (the scaler's decision, and the new worker
// READY), p99 at --low/s, p99 in each 5 s of --high/s and when it came back within 2x of the
// steady p99 (the last 10 s at --high/s), refused (503) and failed requests, and how long after
// the last answer the workers were back at min (the scale-down delay, --down-ms). The load
// average (uptime) is printed with each run, as the machine is shared.
//
//   node bench/elastic-step.mjs [--low 10] [--high 300] [--low-seconds 10] [--high-seconds 30] [--down-ms 10000]
//                               [--runs 1,0[,cold]] [--set key=value ...] [--server-root DIR]
//
// The server runs as a user starts it (bench/lib.mjs userServer) on free 127.0.0.1 ports, with
// scale_down_delay_ms=--down-ms and whatever --set adds; the generator is the raw client of
// open-loop.mjs. Every phase is bounded: answers are awaited 30 s at most, the return to min
// --down-ms + 30 s. Results go to bench/results/<date>-elastic-step.json too.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { atFixedRate, percentile, sorted, userServer } from './lib.mjs';
import { RawClient, rawPost } from './raw-client.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    low: { type: 'string', default: '10' },
    high: { type: 'string', default: '300' },
    'low-seconds': { type: 'string', default: '10' },
    'high-seconds': { type: 'string', default: '30' },
    'down-ms': { type: 'string', default: '10000' },
    set: { type: 'string', multiple: true, default: [] },
    runs: { type: 'string', default: '1,0' },
    'server-root': { type: 'string', default: ROOT },
  },
});
const LOW = Number(opts.low);
const HIGH = Number(opts.high);
const LOW_SECONDS = Number(opts['low-seconds']);
const HIGH_SECONDS = Number(opts['high-seconds']);
const DOWN_MS = Number(opts['down-ms']);
const MAX_WORKERS = 4;
const BODY = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));

const server = await userServer('tsserve-elastic-', [`scale_down_delay_ms=${DOWN_MS}`, 'default_workers_per_model=1', ...opts.set], {
  root: opts['server-root'],
});
copyFileSync(join(ROOT, 'model-store', 'mnist.mar'), join(server.store, 'mnist.mar'));
const origin = server.inference;
const client = new RawClient(origin, rawPost(origin, '/predictions/mnist', BODY, 'image/png'));
const results = {
  at: new Date().toISOString(),
  serverRoot: opts['server-root'],
  low: LOW,
  high: HIGH,
  lowSeconds: LOW_SECONDS,
  highSeconds: HIGH_SECONDS,
  downMs: DOWN_MS,
  set: opts.set,
  runs: [],
};

try {
  await server.start(['--models', 'mnist=mnist.mar']);
  console.log(
    `step ${LOW}/s for ${LOW_SECONDS} s -> ${HIGH}/s for ${HIGH_SECONDS} s on mnist, max_worker ${MAX_WORKERS}, scale_down_delay_ms ${DOWN_MS}${opts.set.length ? `, ${opts.set.join(', ')}` : ''}`,
  );
  for (const kind of opts.runs.split(',')) {
    const min = kind === 'cold' ? 0 : Number(kind);
    await scale(min, MAX_WORKERS);
    const settled = await workersAt(min, DOWN_MS + 30_000);
    if (!settled) console.log(`  (the model did not reach ${min} workers before the step)`);
    const run = await step(min, kind === 'cold' ? 0 : LOW_SECONDS);
    results.runs.push(run);
    report(run);
  }
  console.log(`scale metrics: ${await scaleMetrics()}`);
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${results.at.slice(0, 16).replace(/[-:T]/g, '')}-elastic-step.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`results: ${file}`);
} finally {
  client.close();
  await server.stop();
  server.remove();
}

/** One step from min workers: the load, the workers seen meanwhile, and the return to min. */
async function step(min, lowSeconds) {
  const loadBefore = loadavg();
  const watch = watchWorkers();
  const began = performance.now();
  const answers = [];
  const send = () => {
    const sent = performance.now();
    return client.send().then(
      ({ status, body }) =>
        answers.push({ at: sent - began, ms: performance.now() - sent, status, why: status === 200 ? '' : body.toString('utf8').slice(0, 120) }),
      (err) => answers.push({ at: sent - began, ms: performance.now() - sent, status: 0, why: err.message }),
    );
  };
  const low = await atFixedRate(LOW, lowSeconds, send);
  const stepAt = performance.now() - began;
  const high = await atFixedRate(HIGH, HIGH_SECONDS, send);
  const calls = [...low.calls, ...high.calls];
  await Promise.race([Promise.all(calls), new Promise((r) => setTimeout(r, 30_000).unref())]);
  const lastAnswerAt = performance.now() - began;
  const backAtMin = await workersAt(min, DOWN_MS + 30_000);
  const samples = watch.stop();
  const backMs = backAtMin ? performance.now() - began - lastAnswerAt : undefined;
  return summarise({
    min,
    cold: lowSeconds === 0,
    loadBefore,
    loadAfter: loadavg(),
    stepAt,
    answers,
    samples,
    sent: calls.length,
    backMs,
    late: Math.max(low.late, high.late),
  });
}

function summarise({ min, cold, loadBefore, loadAfter, stepAt, answers, samples, sent, backMs, late }) {
  const ok = answers.filter((a) => a.status === 200);
  const p99Of = (from, to) => percentile(sorted(ok.filter((a) => a.at >= from && a.at < to).map((a) => a.ms)), 99);
  const highEnd = stepAt + HIGH_SECONDS * 1000;
  const steady = p99Of(highEnd - 10_000, highEnd);
  const windows = [];
  for (let from = stepAt; from < highEnd; from += 5000) windows.push(p99Of(from, Math.min(from + 5000, highEnd)));
  // The first 1 s after the step from which every second's p99 stays within 2x of the steady p99.
  let recoveredAfter;
  for (let from = stepAt; from < highEnd; from += 1000) {
    let within = true;
    for (let s = from; s < highEnd && within; s += 1000) within = p99Of(s, s + 1000) <= 2 * steady;
    if (within) {
      recoveredAfter = (from - stepAt) / 1000;
      break;
    }
  }
  const startWorkers = samples.find((s) => s.at >= stepAt)?.workers ?? min;
  const added = samples.find((s) => s.at >= stepAt && s.workers > Math.max(startWorkers, 1));
  const addedReady = samples.find((s) => s.at >= stepAt && s.ready > Math.max(startWorkers, 1));
  const firstReady = samples.find((s) => s.at >= stepAt && s.ready > 0);
  const first = [...answers].sort((a, b) => a.at - b.at)[0];
  const reasons = new Map();
  for (const a of answers.filter((x) => x.status !== 200)) reasons.set(`${a.status} ${a.why}`, (reasons.get(`${a.status} ${a.why}`) ?? 0) + 1);
  return {
    min,
    cold,
    loadavg: { before: loadBefore.map((l) => l.toFixed(2)), after: loadAfter.map((l) => l.toFixed(2)) },
    sent,
    answered: ok.length,
    refused: answers.filter((a) => a.status === 503).length,
    refusedAfterS: [...new Set(answers.filter((a) => a.status === 503).map((a) => Math.floor((a.at - stepAt) / 1000)))].sort((x, y) => x - y),
    failed: sent - ok.length - answers.filter((a) => a.status === 503).length,
    errors: [...reasons].map(([why, n]) => `${n} x ${why}`),
    firstAnswerMs: first ? Math.round(first.ms) : undefined,
    p99LowMs: round(p99Of(stepAt - Math.min(LOW_SECONDS, 5) * 1000, stepAt)),
    p99HighWindowsMs: windows.map(round),
    p99SteadyHighMs: round(steady),
    withinTwiceSteadyAfterS: recoveredAfter,
    workerAddedAfterS: added ? round((added.at - stepAt) / 1000) : undefined,
    workerAddedReadyAfterS: addedReady ? round((addedReady.at - stepAt) / 1000) : undefined,
    firstReadyAfterS: firstReady ? round((firstReady.at - stepAt) / 1000) : undefined,
    mostWorkers: Math.max(...samples.map((s) => s.workers)),
    waitingAtHighMean: round(mean(samples.filter((s) => s.at >= stepAt && s.at < highEnd).map((s) => s.waiting))),
    boundsHeld: [...new Set(samples.map((s) => s.bound).filter(Boolean))],
    workersTimeline: timeline(samples, stepAt),
    backToMinAfterLastAnswerS: backMs === undefined ? undefined : round(backMs / 1000),
    generatorLateMs: Math.round(late),
  };
}

function report(r) {
  console.log(`\nmin ${r.min}${r.cold ? ', cold step (no low phase)' : ''} (load average ${r.loadavg.before.join(' ')} -> ${r.loadavg.after.join(' ')})`);
  const when = r.refused > 0 ? ` (in seconds ${r.refusedAfterS.join(',')} after the step)` : '';
  console.log(
    `  sent ${r.sent}, answered ${r.answered}, refused ${r.refused}${when}, failed ${r.failed}${r.errors.length ? `: ${r.errors.map((e) => e.replace(/\s+/g, ' ')).join('; ')}` : ''}`,
  );
  console.log(
    `  first answer ${r.firstAnswerMs} ms; p99 at ${LOW}/s ${r.p99LowMs} ms; at ${HIGH}/s per 5 s ${r.p99HighWindowsMs.join(' ')} ms, steady (last 10 s) ${r.p99SteadyHighMs} ms`,
  );
  console.log(`  every second within 2x of steady from ${r.withinTwiceSteadyAfterS ?? '-'} s after the step`);
  console.log(
    `  first READY ${r.firstReadyAfterS ?? '-'} s after the step; worker added ${r.workerAddedAfterS ?? '-'} s after it (READY ${r.workerAddedReadyAfterS ?? '-'} s); most ${r.mostWorkers}; requests waiting at ${HIGH}/s ${r.waitingAtHighMean} on average; bound held: ${r.boundsHeld.join(', ') || 'none'}`,
  );
  console.log(`  workers: ${r.workersTimeline}`);
  console.log(
    `  back at min ${r.min} ${r.backToMinAfterLastAnswerS ?? '(not within the bound)'} s after the last answer; generator late ${r.generatorLateMs} ms at worst`,
  );
}

/** Polls describe every 200 ms: workers, READY ones, the bound held. */
function watchWorkers() {
  const began = performance.now();
  const samples = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const d = await describe().catch(() => undefined);
      if (d) {
        const ready = d.workers.filter((w) => w.status === 'READY').length;
        samples.push({
          at: performance.now() - began,
          workers: d.workers.length,
          ready,
          waiting: d.jobQueueStatus.pendingRequests,
          bound: d.autoscale?.boundHeld,
        });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    stop() {
      stopped = true;
      void loop;
      return samples;
    },
  };
}

/** Changes of the worker count, as `count@seconds` from the step. */
function timeline(samples, stepAt) {
  const out = [];
  let last;
  for (const s of samples) {
    if (s.workers === last) continue;
    last = s.workers;
    out.push(`${s.workers}@${((s.at - stepAt) / 1000).toFixed(1)}s`);
  }
  return out.join(' ');
}

async function describe() {
  const [d] = await (await fetch(`${server.management}/models/mnist`)).json();
  return d;
}

async function scale(min, max) {
  const res = await fetch(`${server.management}/models/mnist?min_worker=${min}&max_worker=${max}&synchronous=true`, { method: 'PUT' });
  if (!res.ok) throw new Error(`scale ${min}..${max}: ${res.status} ${await res.text()}`);
}

/** Waits (at most `ms`) until the model has `count` workers; whether it did. */
async function workersAt(count, ms) {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    if ((await describe()).workers.length === count) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

async function scaleMetrics() {
  const port = readFileSync(join(server.dir, 'config.properties'), 'utf8').match(/metrics_address=http:\/\/127\.0\.0\.1:(\d+)/)[1];
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => /^ts_worker_scale_\w+\{|^ts_worker_start_milliseconds_(sum|count)\{/.test(l))
    .map((l) => l.replace(/hostname="[^"]*",/, '').replace(/model_name="mnist",model_version="1.0",/, ''))
    .join('; ');
}

function mean(values) {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

function round(n) {
  return Math.round(n * 10) / 10;
}

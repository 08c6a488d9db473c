#!/usr/bin/env node
// Adaptive batching beside hand-tuned batch keys (issue 34, item 1), one model at a time:
//
//   node bench/adaptive-batching.mjs [--models DIR] [--seconds 8] [--only mnist|resnet18] [--workers 2] [--sweep 1:0,8:0,...] [--before ROOT]
//   node bench/adaptive-batching.mjs --few [--fresh] [--sleep-ms 50] [--seconds 4] [--before ROOT]
//
// For each model, a sweep of hand-tuned (batch_size, max_batch_delay) pairs, then the same model
// with no batch key at all (adaptive batching; mnist's handler is the user's, so its YAML says
// `batching: adaptive`, which a built-in handler such as resnet18's image_classifier does not
// need). Each configuration is a tsserve of its own (bench/lib.mjs's userServer, 2 workers, the
// same warm-up sample), measured with bench/raw-client.mjs's lean client:
//   c32   a closed loop of 32 connections for --seconds: answers/s, p50, p99 (after 2 s unmeasured),
//         and the server's CPU (its process and its workers') per answer: on a machine shared with
//         other jobs the CPU a configuration gets moves by 2x, the CPU an answer costs much less;
//   c1    one connection for half of --seconds: p50 (batch 1 and adaptive only: the low-load cost);
//   again the sweep's two best pairs, batch 1 and adaptive, interleaved, three rounds: the machine
//         is shared and moves by up to 2x within minutes, so these are compared by their medians;
//   open  the best pair (highest median c32) and adaptive, interleaved, two rounds, each offered
//         0.7x that median at a fixed rate (open loop, bench/lib.mjs's atFixedRate) for --seconds:
//         answered/s over the time to the last answer, refused, p50, p99.
// --before ROOT adds adaptive batching as another build serves it (a checkout with dist/ built: the
// code before a change) to the rounds and the open loop, beside this one's.
// --few: a closed loop of a few clients on one worker (review-4 F10), where batching pays most and
// a batch that leaves without the other clients costs each request a second batch: the echo
// model of the tests (test/fixtures/echo_handler.ts) with a body of `sleep:<ms>`, a batch that
// takes --sleep-ms whatever its size (a GPU's, a remote call's fixed cost), one worker; batch 8
// with a 5 ms delay (the reviewer's hand-tuned pair), batch 1, and adaptive (and --before's), each
// a server of its own started once, measured in turn at 1, 2, 4 and 8 clients for --seconds each,
// three rounds interleaved: p50, p99, answers/s and the mean batch (describe's, for adaptive). The
// servers are warmed by the front end's warm-up (32 connections for front_end_warmup_ms, which
// shows adaptive batching every batch size) and serve all the cells; --fresh starts a server for
// each cell with no front-end warm-up instead, whose fit has seen no batch (review F7).
// Models: the shared bench's (../shared/bench/make_models.py, as bench/run.sh makes them) in
// --models, made into a temporary folder when not given. Writes
// bench/results/<date>-<time>-adaptive-batching.json; the machine's load average beside each cell.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { atFixedRate, childPids, cpuSeconds, median, percentile, sorted, userServer } from './lib.mjs';
import { RawClient, rawPost } from './raw-client.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
// The shared bench beside the clone (bench/run.sh's default), or beside the worktrees' folder.
const SHARED = process.env.SHARED_BENCH ?? [join(ROOT, '..', 'shared', 'bench'), join(ROOT, '..', '..', 'shared', 'bench')].find((d) => existsSync(d));
const { values: opts } = parseArgs({
  options: {
    models: { type: 'string' },
    seconds: { type: 'string', default: '8' },
    only: { type: 'string' },
    workers: { type: 'string', default: '2' },
    sweep: { type: 'string' },
    before: { type: 'string' },
    few: { type: 'boolean', default: false },
    fresh: { type: 'boolean', default: false },
    'sleep-ms': { type: 'string', default: '50' },
  },
});
const SECONDS = Number(opts.seconds);
const WARM_SECONDS = 2;
const OPEN_LOAD = 0.7;
const ROUNDS = 3;
const OPEN_ROUNDS = 2;
const ADAPTIVE = { label: 'adaptive (no batch keys)' };
// --before ROOT: the same, served by another build (a checkout with dist/ built), among the finalists.
const BEFORE = opts.before ? { label: 'adaptive, before', root: opts.before } : undefined;

const MODELS = {
  mnist: {
    handler: join(ROOT, 'examples/mnist/mnist_handler.ts'),
    sample: join(ROOT, 'examples/mnist/digits/7_0.png'),
    type: 'image/png',
    adaptiveThreads: false,
    adaptive: { batching: 'adaptive' },
    sweep: '1:0,2:0,4:0,8:0,16:0,32:0,8:2,16:5',
  },
  resnet18: {
    handler: 'image_classifier',
    sample: join(SHARED, 'images/photo.jpg'),
    type: 'image/jpeg',
    adaptiveThreads: true,
    adaptive: {},
    sweep: '1:0,2:0,4:0,8:0,16:0,8:50',
  },
};

// A batch of the echo model that takes --sleep-ms whatever its size: --few's model.
const SLEEP = {
  handler: join(ROOT, 'test/fixtures/echo_handler.ts'),
  body: `sleep:${opts['sleep-ms']}`,
  type: 'text/plain',
  adaptiveThreads: false,
  adaptive: { batching: 'adaptive' },
};
const FEW_CLIENTS = [1, 2, 4, 8];
// --fresh: each --few cell on a server of its own, started without the front end's warm-up (whose
// 32 connections show adaptive batching every batch size before the first client comes).
const FRESH = opts.fresh;
const FRESH_LINES = ['front_end_warmup_ms=0'];

if (opts.few) {
  await fewClients();
  process.exit(0);
}
const modelsDir = opts.models ?? makeModels();
const results = { when: new Date().toISOString(), uptimeStart: uptime(), seconds: SECONDS, workers: Number(opts.workers), models: {} };
const file = join(ROOT, 'bench/results', `${stamp()}-adaptive-batching.json`);
for (const [name, spec] of Object.entries(MODELS)) {
  if (opts.only && opts.only !== name) continue;
  results.models[name] = await benchModel(name, spec);
  results.uptimeEnd = uptime();
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
}
console.log(`uptime at start: ${results.uptimeStart}\nuptime at end:   ${results.uptimeEnd}\n${file}`);
if (!opts.models) rmSync(modelsDir, { recursive: true, force: true });

async function benchModel(name, spec) {
  const sweep = [];
  const pairs = (opts.sweep ?? spec.sweep).split(',').map((p) => p.split(':').map(Number));
  for (const [batchSize, maxBatchDelay] of pairs) {
    sweep.push(await measure(name, spec, { label: `batch ${batchSize}, delay ${maxBatchDelay}`, batchSize, maxBatchDelay }, batchSize === 1));
  }
  // The machine is shared and moves by up to 2x within minutes: the two best pairs of the sweep,
  // batch 1 and adaptive are measured again, interleaved, ROUNDS times, and compared by medians.
  const top = [...sweep].sort((a, b) => b.c32.perSecond - a.c32.perSecond).slice(0, 2);
  const finalists = [
    ...top.map((c) => c.config),
    ...(top.some((c) => c.config.batchSize === 1) ? [] : [sweep[0].config]),
    ...(BEFORE ? [BEFORE] : []),
    ADAPTIVE,
  ];
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++)
    for (const config of finalists) rounds.push(await measure(name, spec, config, config.batchSize === undefined || config.batchSize === 1));
  const medians = finalists.map((config) => {
    const own = rounds.filter((c) => c.config === config);
    return {
      config: config.label,
      c32PerSecond: median(own.map((c) => c.c32.perSecond)),
      c32P50: median(own.map((c) => c.c32.p50)),
      c1P50: own[0].c1 ? median(own.map((c) => c.c1.p50)) : undefined,
      c32CpuMsPerAnswer: median(own.map((c) => c.c32.cpuMsPerAnswer)),
    };
  });
  const adaptive = medians.at(-1);
  const before = BEFORE ? medians.at(-2) : undefined;
  const tuned = medians.filter((m) => m !== adaptive && m !== before);
  const best = tuned.reduce((a, b) => (b.c32PerSecond > a.c32PerSecond ? b : a));
  const batch1 = tuned.find((m) => m.c1P50 !== undefined);
  // A sweep without batch 1 (--sweep) has no low-load figure to compare against.
  const aboveBatch1 = (m) => (batch1 ? round(m.c1P50 - batch1.c1P50) : undefined);
  const bestConfig = finalists.find((c) => c.label === best.config);
  const rate = OPEN_LOAD * best.c32PerSecond;
  const open = [];
  const openConfigs = [bestConfig, ...(BEFORE ? [BEFORE] : []), ADAPTIVE];
  for (let r = 0; r < OPEN_ROUNDS; r++) for (const config of openConfigs) open.push(await openLoop(name, spec, config, rate));
  const openMedian = (config) => median(open.filter((o) => o.config === config.label).map((o) => o.perSecond));
  const summary = {
    best: best.config,
    c32: ratio(adaptive.c32PerSecond, best.c32PerSecond),
    open: ratio(openMedian(ADAPTIVE), openMedian(bestConfig)),
    c1p50AboveBatch1Ms: aboveBatch1(adaptive),
    c32CpuPerAnswer: ratio(adaptive.c32CpuMsPerAnswer, best.c32CpuMsPerAnswer),
    ...(before
      ? {
          beforeC32: ratio(before.c32PerSecond, best.c32PerSecond),
          beforeC32CpuPerAnswer: ratio(before.c32CpuMsPerAnswer, best.c32CpuMsPerAnswer),
          beforeOpen: ratio(openMedian(BEFORE), openMedian(bestConfig)),
          beforeC1p50AboveBatch1Ms: aboveBatch1(before),
        }
      : {}),
  };
  console.log(
    `${name}: medians of ${ROUNDS}: adaptive / best (${best.config}): c32 ${summary.c32}x, CPU per answer ${summary.c32CpuPerAnswer}x; open ${OPEN_LOAD}x of ${rate.toFixed(0)}/s ${summary.open}x; c1 p50 ${adaptive.c1P50.toFixed(2)} ms, ${summary.c1p50AboveBatch1Ms} ms above batch 1's` +
      (before
        ? `; before: c32 ${summary.beforeC32}x, CPU per answer ${summary.beforeC32CpuPerAnswer}x, open ${summary.beforeOpen}x, c1 p50 ${summary.beforeC1p50AboveBatch1Ms} ms above batch 1's`
        : ''),
  );
  return { sweep, rounds, medians, open: { rate, cells: open }, summary };
}

/** --few: see the header. Writes bench/results/<date>-<time>-adaptive-batching-few.json. */
async function fewClients() {
  const results = {
    when: new Date().toISOString(),
    uptimeStart: uptime(),
    seconds: SECONDS,
    sleepMs: Number(opts['sleep-ms']),
    workers: 1,
    fresh: FRESH,
    cells: [],
  };
  const configs = [
    { label: 'batch 8, delay 5', batchSize: 8, maxBatchDelay: 5 },
    { label: 'batch 1, delay 0', batchSize: 1, maxBatchDelay: 0 },
    ...(BEFORE ? [BEFORE] : []),
    ADAPTIVE,
  ];
  const servers = [];
  try {
    if (!FRESH) for (const config of configs) servers.push({ config, ...(await startServer('sleep', SLEEP, config, 1)) });
    for (let round = 1; round <= ROUNDS; round++)
      for (const clients of FEW_CLIENTS)
        for (const config of configs) {
          const fresh = FRESH ? await startServer('sleep', SLEEP, config, 1, FRESH_LINES) : undefined;
          const { server, request } = fresh ?? servers.find((s) => s.config === config);
          try {
            const loop = await closedLoop(server, request, clients, SECONDS);
            const batching = await describeBatching(server, 'sleep');
            const cell = { round, clients, config: config.label, ...loop, meanBatch: batching?.meanBatch, load: loadavg()[0] };
            results.cells.push(cell);
            console.log(
              `round ${round} c${clients} ${config.label.padEnd(26)} p50 ${loop.p50.toFixed(1).padStart(6)} p99 ${loop.p99.toFixed(1).padStart(6)} ms ${loop.perSecond.toFixed(1).padStart(6)}/s` +
                (batching?.policy === 'adaptive' ? `  mean batch ${batching.meanBatch}` : '') +
                `  load ${cell.load.toFixed(1)}`,
            );
          } finally {
            await fresh?.stop();
          }
        }
  } finally {
    for (const s of servers) await s.stop();
  }
  results.medians = FEW_CLIENTS.flatMap((clients) =>
    configs.map((config) => {
      const own = results.cells.filter((c) => c.clients === clients && c.config === config.label);
      return { clients, config: config.label, p50: median(own.map((c) => c.p50)), perSecond: median(own.map((c) => c.perSecond)) };
    }),
  );
  for (const m of results.medians)
    console.log(`medians c${m.clients} ${m.config.padEnd(26)} p50 ${m.p50.toFixed(1).padStart(6)} ms ${m.perSecond.toFixed(1).padStart(6)}/s`);
  results.uptimeEnd = uptime();
  const out = join(ROOT, 'bench/results', `${stamp()}-adaptive-batching-few${FRESH ? '-fresh' : ''}.json`);
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`uptime at start: ${results.uptimeStart}\nuptime at end:   ${results.uptimeEnd}\n${out}`);
}

/** One configuration's server: c32, and c1 when `lowLoad`. */
async function measure(name, spec, config, lowLoad) {
  return withServer(name, spec, config, async (server, request) => {
    const c32 = await closedLoop(server, request, 32, SECONDS);
    const batching = await describeBatching(server, name);
    const c1 = lowLoad ? await closedLoop(server, request, 1, SECONDS / 2) : undefined;
    const cell = { config, c32, c1, batching, load: loadavg()[0] };
    console.log(
      `${name.padEnd(9)} ${config.label.padEnd(26)} c32 ${c32.perSecond.toFixed(1).padStart(7)}/s p50 ${c32.p50.toFixed(1)} p99 ${c32.p99.toFixed(1)} cpu ${c32.cpuMsPerAnswer.toFixed(3)} ms/answer` +
        (c1 ? `  c1 p50 ${c1.p50.toFixed(2)} ms` : '') +
        (batching?.policy === 'adaptive'
          ? `  chose batch ${batching.batchSize} (mean ${batching.meanBatch}), fit ${batching.fixedMs} + ${batching.perItemMs} n ms`
          : '') +
        `  load ${cell.load.toFixed(1)}`,
    );
    return cell;
  });
}

async function openLoop(name, spec, config, rate) {
  return withServer(name, spec, config, async (server, request) => {
    const client = new RawClient(server.inference, request);
    const latencies = [];
    let refused = 0;
    let failed = 0;
    let lastAnswer = 0;
    const run = await atFixedRate(rate, SECONDS, () => {
      const sent = performance.now();
      return client.send().then(
        ({ status }) => {
          lastAnswer = performance.now();
          if (status === 200) latencies.push(lastAnswer - sent);
          else refused++;
        },
        () => failed++,
      );
    });
    await Promise.race([Promise.all(run.calls), new Promise((r) => setTimeout(r, 30_000))]);
    client.close();
    const ms = sorted(latencies);
    const cell = {
      config: config.label,
      offered: rate,
      perSecond: latencies.length / ((lastAnswer - run.began) / 1000),
      refused,
      failed: run.calls.length - latencies.length - refused,
      p50: percentile(ms, 50),
      p99: percentile(ms, 99),
      lateMs: run.late,
      load: loadavg()[0],
    };
    console.log(
      `${name.padEnd(9)} open ${rate.toFixed(0)}/s ${config.label.padEnd(26)} answered ${cell.perSecond.toFixed(1)}/s refused ${refused} failed ${cell.failed} p50 ${cell.p50.toFixed(1)} p99 ${cell.p99.toFixed(1)}  load ${cell.load.toFixed(1)}`,
    );
    return cell;
  });
}

/** `connections` clients each sending as soon as its last answer came, for `seconds` after WARM_SECONDS. */
async function closedLoop(server, request, connections, seconds) {
  const client = new RawClient(server.inference, request);
  const latencies = [];
  let errors = 0;
  const pid = server.pid();
  let cpuAtWarmEnd = 0;
  setTimeout(() => (cpuAtWarmEnd = serverCpuSeconds(pid)), WARM_SECONDS * 1000);
  const warmEnd = performance.now() + WARM_SECONDS * 1000;
  const end = warmEnd + seconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const sent = performance.now();
      const { status } = await client.send();
      if (sent < warmEnd) continue;
      if (status === 200) latencies.push(performance.now() - sent);
      else errors++;
    }
  };
  await Promise.all(Array.from({ length: connections }, loop));
  const cpuMsPerAnswer = ((serverCpuSeconds(pid) - cpuAtWarmEnd) * 1000) / latencies.length;
  client.close();
  const ms = sorted(latencies);
  return { perSecond: latencies.length / seconds, p50: percentile(ms, 50), p99: percentile(ms, 99), errors, cpuMsPerAnswer };
}

/** CPU seconds of the server process and its workers. */
function serverCpuSeconds(pid) {
  return cpuSeconds(pid) + childPids(pid).reduce((sum, child) => sum + cpuSeconds(child), 0);
}

/** Serves `name` in `config` (batchSize/maxBatchDelay, or none: adaptive), runs `work`, stops. */
async function withServer(name, spec, config, work) {
  const { server, request, stop } = await startServer(name, spec, config, Number(opts.workers));
  try {
    return await work(server, request);
  } finally {
    await stop();
  }
}

/** A server of `name` in `config` with `workers` READY (and config.properties `lines`), the request to send it, and stop(). */
async function startServer(name, spec, config, workers, lines = []) {
  const server = await userServer(`tsserve-adaptive-${name}-`, lines, config.root ? { root: config.root } : undefined);
  const stop = async () => {
    await server.stop();
    server.remove();
  };
  try {
    archive(name, spec, config, server.store, workers);
    await server.start(['--models', `${name}=${name}.mar`]);
    await workersReady(server, name, workers);
  } catch (err) {
    await stop();
    throw err;
  }
  const body = spec.body === undefined ? readFileSync(spec.sample) : Buffer.from(spec.body);
  return { server, request: rawPost(server.inference, `/predictions/${name}`, body, spec.type), stop };
}

function archive(name, spec, config, store, workers) {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-adaptive-archive-'));
  const sample = join(dir, spec.body === undefined ? `sample${spec.sample.slice(spec.sample.lastIndexOf('.'))}` : 'sample.txt');
  if (spec.body === undefined) copyFileSync(spec.sample, sample);
  else writeFileSync(sample, spec.body);
  const keys =
    config.batchSize === undefined
      ? Object.entries(spec.adaptive).map(([k, v]) => `${k}: ${v}`)
      : [`batchSize: ${config.batchSize}`, `maxBatchDelay: ${config.maxBatchDelay}`];
  const yaml = [
    `minWorkers: ${workers}`,
    `maxWorkers: ${workers}`,
    `adaptiveThreads: ${spec.adaptiveThreads}`,
    `warmupFile: ${sample.slice(dir.length + 1)}`,
    ...keys,
  ];
  writeFileSync(join(dir, 'model-config.yaml'), `${yaml.join('\n')}\n`);
  execFileSync(process.execPath, [
    join(ROOT, 'bin/tsserve-archiver.js'),
    '--model-name',
    name,
    '--version',
    '1.0',
    ...(spec.body === undefined ? ['--serialized-file', join(modelsDir, `${name}.onnx`)] : []),
    '--handler',
    spec.handler,
    '--config-file',
    join(dir, 'model-config.yaml'),
    '--extra-files',
    sample,
    '--export-path',
    store,
    '--force',
  ]);
  rmSync(dir, { recursive: true, force: true });
}

async function workersReady(server, name, workers) {
  for (let i = 0; i < 600; i++) {
    const res = await fetch(`${server.management}/models/${name}`).catch(() => undefined);
    if (res?.ok) {
      const [d] = await res.json();
      if (d.workers.filter((w) => w.status === 'READY').length >= workers) return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name}: ${workers} workers not READY within 60 s`);
}

async function describeBatching(server, name) {
  const [d] = await (await fetch(`${server.management}/models/${name}`)).json();
  return d.batching;
}

function makeModels() {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-adaptive-models-'));
  execFileSync('/usr/bin/python3', [join(SHARED, 'make_models.py'), dir], { stdio: 'ignore' });
  if (!existsSync(join(dir, 'resnet18.onnx'))) throw new Error(`make_models.py made no resnet18.onnx in ${dir}`);
  return dir;
}

function ratio(a, b) {
  return Math.round((a / b) * 100) / 100;
}

function round(n) {
  return Math.round(n * 100) / 100;
}

function uptime() {
  return execFileSync('uptime', { encoding: 'utf8' }).trim();
}

function stamp() {
  const d = new Date();
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

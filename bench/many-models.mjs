#!/usr/bin/env node
// Many registered models, few loaded (issue 33 items 2 and 3): requests with a Zipf-like popularity
// over --models copies of mnist.mar under a memory budget; what an unloaded model's first request
// costs, and what the unloading does to the busiest models, with each worker a process of its own
// (`process`, TorchServe's way) and with the models sharing worker processes (`shared`:
// shared_worker_model_mb=10, workers/shared-hosts.ts), one after the other in one run.
//
//   node bench/many-models.mjs [--modes process,shared] [--models 1000] [--budget-mb 400] [--seconds 60]
//                              [--hot-clients 4] [--parallel 4] [--zipf 1.0] [--busy-seconds 10]
//                              [--hot-rate R] [--pairs 5] [--pair-seconds 12]
//                              [--server-node-options=OPTS] [--server-root DIR]
//
// For each mode: starts `tsserve --start` (free 127.0.0.1 ports, a temporary folder) with
// model_memory_budget_mb, registers one model and then 20 more (the workers' PSS after each: the
// memory per additional loaded model), then the rest of --models names for model-store/mnist.mar
// (one worker each; those past the budget are registered unloaded); then one busy model alone
// (8 closed-loop clients for --busy-seconds: its throughput), then two phases of --seconds each,
// closed loop:
//   A. --hot-clients clients ask the 10 most popular models (Zipf weights among them): no unloading;
//   A2. the same, plus one client asking 50 other models that are loaded (the last loaded at
//      registration, in hosts that hold no hot model), as B's fifth client does (describe, then
//      predict): B's offered load with no load or unload. B against A alone was unfair: on two
//      cores the fifth closed-loop client (its requests, the front end's work for them, this
//      script's own) takes CPU from the hot models whether or not anything loads, so B's rise
//      over A2 is what the loads and unloads cost them, and B's over A is kept beside it;
//   B. the same as A, plus one client asking the other models (Zipf over ranks 11..N), whose
//      requests load unloaded models and so unload others;
//   C. that one client alone for --cold-seconds: what a load costs with no busy model beside it.
// A2 and B interleaved (--pairs N, 5 by default): one A2 and one B of --pair-seconds each, N times,
// in alternating order (A2 B, B A2, A2 B, ...), after A. Run one after the other, minutes apart,
// A2 and B measured the machine's drift between them as much as the loads: under other jobs the
// rise swung -67%..+80% between runs of one code (bench/results/20261207-0140-many-models-yield.txt).
// Side by side, each pair's B over A2 sees the same machine; the median of the pairs' rises, with
// their spread, is the figure, the pooled p99s of all A2 and all B windows beside it. A2's client
// asks models loaded at its window's start in hosts holding no hot model (checked then: B's
// windows unload models). --pairs 0: the old layout, one A2 and one B of --seconds each.
// With --hot-rate R, the hot clients are an open loop instead: R requests a second in all, each
// sent at its time whatever the others do (below capacity, the p99 of a load the machine can
// carry rather than of a saturated one).
// Reports: registration time; every answer's status (all must be 200); the process tree's PSS and
// the workers' PSS sampled each second against the budget; the first-request latency of a model
// that was unloaded when asked (describe's `loaded` read just before), its median and p99; the
// 10 busiest models' median and p99 in A, A2 and B, and B's rise over each; the CPU seconds each
// phase took from the front end, the hosts of the hot models, the other hosts (those that ended
// included) and this script; how many loads landed in a host serving a hot model; each phase's
// start and end on CLOCK_MONOTONIC in µs (a server --cpu-prof's clock: `--server-node-options
// "--cpu-prof --cpu-prof-dir=DIR"` profiles the server, and a phase is that slice of it).
// Results JSON in bench/results/.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { atFixedRate, childPids, cpuSeconds, median, treePssMb, userServer } from './lib.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    modes: { type: 'string', default: 'process,shared' },
    models: { type: 'string', default: '1000' },
    'budget-mb': { type: 'string', default: '400' },
    seconds: { type: 'string', default: '60' },
    'hot-clients': { type: 'string', default: '4' },
    parallel: { type: 'string', default: '4' },
    zipf: { type: 'string', default: '1.0' },
    'busy-seconds': { type: 'string', default: '10' },
    'cold-seconds': { type: 'string', default: '20' },
    'hot-rate': { type: 'string', default: '0' },
    pairs: { type: 'string', default: '5' },
    'pair-seconds': { type: 'string', default: '12' },
    'server-node-options': { type: 'string', default: '' },
    // Another checkout's server (built, with model-store/mnist.mar), run by this script: before and after a change.
    'server-root': { type: 'string', default: ROOT },
  },
});
const N = Number(opts.models);
const HOT = 10;
const SECONDS = Number(opts.seconds);
/** Models registered before the per-model memory is read: one, then this many more. */
const MORE = 20;
const names = Array.from({ length: N }, (_, i) => `m${String(i + 1).padStart(4, '0')}`);
const digit = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
/** Each mode's server properties beside the common ones. */
const MODES = { process: [], shared: ['shared_worker_model_mb=10'] };

/** Loaded models a fair baseline's fifth client asks (phase A2). */
const LOADED_TAIL = 50;
const HOT_RATE = Number(opts['hot-rate']);
const PAIRS = Number(opts.pairs);
const PAIR_SECONDS = Number(opts['pair-seconds']);
const all = {
  serverRoot: opts['server-root'],
  models: N,
  budgetMb: Number(opts['budget-mb']),
  seconds: SECONDS,
  hotClients: Number(opts['hot-clients']),
  hotRate: HOT_RATE,
  pairs: PAIRS,
  pairSeconds: PAIR_SECONDS,
  zipf: Number(opts.zipf),
  modes: {},
};
let server;
for (const mode of opts.modes.split(',')) {
  if (!MODES[mode]) throw new Error(`unknown mode ${mode}; the modes are ${Object.keys(MODES).join(', ')}`);
  console.log(`--- mode ${mode}; load ${loadavg()[0].toFixed(2)}`);
  all.modes[mode] = await runMode(mode);
}
const out = join(ROOT, 'bench', 'results', `${stamp()}-many-models.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(all, null, 2)}\n`);
console.log(`results: ${out}`);

async function runMode(mode) {
  const nodeOptions = opts['server-node-options'] ? { NODE_OPTIONS: opts['server-node-options'] } : {};
  server = await userServer(
    'tsserve-many-',
    [
      'enable_model_api=true',
      `model_memory_budget_mb=${opts['budget-mb']}`,
      'default_workers_per_model=1',
      // The unload counter is read from /metrics.
      'metrics_mode=prometheus',
      ...MODES[mode],
      // The profiler is the front end's: in every worker it would cost them CPU too.
      ...(opts['server-node-options'] ? ['blacklist_env_vars=^NODE_OPTIONS$'] : []),
    ],
    { env: nodeOptions, root: opts['server-root'] },
  );
  copyFileSync(join(opts['server-root'], 'model-store', 'mnist.mar'), join(server.store, 'mnist.mar'));
  const result = { loadAverageAtStart: loadavg().map(round) };
  try {
    await server.start([]);
    const pid = server.pid();
    const began = performance.now();
    result.pssPerAdditionalModelMb = await pssPerAdditionalModel(pid);
    const registered = await registerAll(1 + MORE);
    result.registerSeconds = round((performance.now() - began) / 1000);
    result.loadedAfterRegister = registered.loaded.length + 1 + MORE;
    console.log(
      `${N} models registered in ${result.registerSeconds} s (${result.loadedAfterRegister} loaded, the rest past the budget); PSS per additional model ${result.pssPerAdditionalModelMb} MB; load ${loadavg()[0].toFixed(2)}`,
    );

    const memory = sampleMemory(pid);
    const hotWeights = zipfWeights(HOT, Number(opts.zipf));
    const tailWeights = zipfWeights(N - HOT, Number(opts.zipf));
    // Every hot model answers once before phase A: their first requests are no part of it.
    await Promise.all(names.slice(0, HOT).map((m) => ask(m)));
    result.busyModel = await busyThroughput(names[0]);
    console.log(`  one busy model alone: ${result.busyModel.perSecond} answers/s, p99 ${result.busyModel.p99} ms`);

    const hotPids = new Set(await Promise.all(names.slice(0, HOT).map(hostPid)));
    const loadedTail = registered.loaded.slice(-LOADED_TAIL);
    const hot = { group: 'hot', pick: () => names[pickIndex(hotWeights)] };
    const tail = { group: 'tail', clients: 1, pick: () => names[HOT + pickIndex(tailWeights)], checkLoaded: true, hotPids };
    const a = await phase(pid, hotPids, [hot]);
    const fairGroups = async () => {
      const models = await loadedAwayFrom(hotPids, [...loadedTail, ...registered.loaded.toReversed()]);
      loadedTail.splice(0, loadedTail.length, ...models);
      return [hot, { ...tail, pick: () => models[Math.floor(Math.random() * models.length)] }];
    };
    const windows = [];
    for (let i = 0; i < Math.max(1, PAIRS); i++) {
      const seconds = PAIRS > 0 ? PAIR_SECONDS : SECONDS;
      const pair = {};
      for (const which of i % 2 === 0 ? ['a2', 'b'] : ['b', 'a2']) {
        pair[which] = await phase(pid, hotPids, which === 'a2' ? await fairGroups() : [hot, tail], seconds);
      }
      windows.push(pair);
      if (PAIRS > 0)
        console.log(
          `  pair ${i + 1}: the ${HOT} busiest p99 A2 ${round(p99(pair.a2.hot))} ms, B ${round(p99(pair.b.hot))} ms (${rise(p99(pair.b.hot), p99(pair.a2.hot))}%); load ${loadavg()[0].toFixed(2)}`,
        );
    }
    const a2 = pooled(windows.map((w) => w.a2));
    const b = pooled(windows.map((w) => w.b));
    const c = await phase(pid, hotPids, [tail], Number(opts['cold-seconds']));
    const mem = memory.stop();
    const cold = b.cold.map((r) => r.ms);
    Object.assign(result, {
      loadAverage: loadavg().map(round),
      statuses: { a: a.statuses, a2: a2.statuses, b: b.statuses },
      hot: {
        a: summary(a.hot),
        a2: summary(a2.hot),
        b: summary(b.hot),
        p99RisePercent: rise(p99(b.hot), p99(a.hot)),
        p99RiseOverA2Percent: rise(p99(b.hot), p99(a2.hot)),
        medianRiseOverA2Percent: rise(median(b.hot), median(a2.hot)),
        ...(PAIRS > 0 ? { pairs: pairRises(windows) } : {}),
      },
      a2ColdLoads: a2.cold.length,
      tail: summary(b.tail),
      tailA2: summary(a2.tail),
      coldFirstRequests: summary(cold),
      coldLoadsInHotHosts: b.coldInHotHosts,
      coldFirstRequestsAlone: summary(c.cold.map((r) => r.ms)),
      statusesAlone: c.statuses,
      cpuSeconds: { a: a.cpu, a2: a2.cpu, b: b.cpu, c: c.cpu },
      phasesMonotonicUs: { a: a.span, a2: a2.span, b: b.span, c: c.span },
      memory: mem,
      unloads: await unloadCount(),
    });
    console.log(`phase A (the ${HOT} busiest only): ${a.hot.length} answers, statuses ${JSON.stringify(a.statuses)}; CPU s ${JSON.stringify(a.cpu)}`);
    console.log(
      `phase A2 (plus a client on ${LOADED_TAIL} loaded models): ${a2.hot.length + a2.tail.length} answers, statuses ${JSON.stringify(a2.statuses)}; CPU s ${JSON.stringify(a2.cpu)}`,
    );
    console.log(
      `phase B (plus the other ${N - HOT}): ${b.hot.length + b.tail.length} answers, statuses ${JSON.stringify(b.statuses)}; CPU s ${JSON.stringify(b.cpu)}`,
    );
    console.log(
      `  the ${HOT} busiest, ms: A median ${result.hot.a.median} p99 ${result.hot.a.p99}; A2 median ${result.hot.a2.median} p99 ${result.hot.a2.p99}; B median ${result.hot.b.median} p99 ${result.hot.b.p99} (p99 ${result.hot.p99RisePercent}% over A, ${result.hot.p99RiseOverA2Percent}% over A2)`,
    );
    if (PAIRS > 0) {
      const { p99RisePercent: r } = result.hot.pairs;
      console.log(
        `  the ${HOT} busiest, B's p99 over A2's in ${PAIRS} interleaved pairs of ${PAIR_SECONDS} s: median ${r.median}% (from ${r.min}% to ${r.max}%); A2's client loaded ${a2.cold.length} models`,
      );
    }
    console.log(
      `  an unloaded model's first request, ms: ${cold.length} of them (${b.coldInHotHosts} loaded in a hot model's host), median ${result.coldFirstRequests.median}, p99 ${result.coldFirstRequests.p99}, max ${result.coldFirstRequests.max}`,
    );
    console.log(
      `  the same with no busy model beside it (phase C, ${opts['cold-seconds']} s), ms: ${c.cold.length} of them, median ${result.coldFirstRequestsAlone.median}, p99 ${result.coldFirstRequestsAlone.p99}; statuses ${JSON.stringify(c.statuses)}; CPU s ${JSON.stringify(c.cpu)}`,
    );
    console.log(`  unloads: ${result.unloads}; distinct tail models asked: ${new Set(b.tailModels).size}`);
    console.log(
      `  PSS, MB: workers at most ${mem.workersMaxMb} (budget ${opts['budget-mb']}), whole tree at most ${mem.treeMaxMb}, median ${mem.treeMedianMb}`,
    );
    console.log(`  load average ${result.loadAverage.join(' ')}`);
    return result;
  } finally {
    await server.stop();
    server.remove();
  }
}

/**
 * The workers' PSS after one model, and after MORE more (registered one at a time, each loaded):
 * what one more loaded model adds, in MB. A few seconds of rest before each reading, so that the
 * spare host and the loads' transient memory have settled.
 */
async function pssPerAdditionalModel(pid) {
  const workersPss = () => childPids(pid).reduce((sum, child) => sum + treePssMb(child), 0);
  await registerOne(names[0]);
  await rest(3000);
  const one = workersPss();
  for (const name of names.slice(1, 1 + MORE)) await registerOne(name);
  await rest(3000);
  return round((workersPss() - one) / MORE);
}

/** 8 closed-loop clients on one model for --busy-seconds: answers a second and the p99. */
async function busyThroughput(model) {
  const times = [];
  const deadline = performance.now() + Number(opts['busy-seconds']) * 1000;
  const began = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (performance.now() < deadline) {
        const started = performance.now();
        if ((await ask(model)) === 200) times.push(performance.now() - started);
      }
    }),
  );
  return { perSecond: round(times.length / ((performance.now() - began) / 1000)), median: round(median(times)), p99: round(p99(times)) };
}

function rest(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Registers the names from `from` on, --parallel at a time, synchronously; answers those loaded, in order. */
async function registerAll(from) {
  let next = from;
  const loaded = [];
  await Promise.all(
    Array.from({ length: Number(opts.parallel) }, async () => {
      while (next < names.length) {
        const name = names[next++];
        if (await registerOne(name)) loaded.push(name);
      }
    }),
  );
  return { loaded: loaded.sort() };
}

/** Registers `name` synchronously; true if it was loaded. */
async function registerOne(name) {
  const res = await fetch(`${server.management}/models?url=mnist.mar&model_name=${name}&initial_workers=1&synchronous=true`, { method: 'POST' });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`${name}: ${res.status} ${body}`);
  return !body.includes('not loaded');
}

/**
 * Runs the groups' clients for `seconds`; each client sends its next request when the last is
 * answered (the hot group, with --hot-rate, at fixed times instead). Answers the latencies, the
 * first requests of unloaded models (and how many loaded in a hot model's host), the statuses,
 * the CPU seconds by process group and the phase's span on CLOCK_MONOTONIC.
 */
async function phase(pid, hotPids, groups, seconds = SECONDS) {
  const out = { hot: [], tail: [], cold: [], coldInHotHosts: 0, tailModels: [], statuses: {} };
  const cpuBefore = cpuByGroup(pid, hotPids);
  const startUs = monotonicUs();
  const deadline = performance.now() + seconds * 1000;
  const request = async (group, model) => {
    const wasLoaded = group.checkLoaded ? await isLoaded(model) : true;
    const started = performance.now();
    const status = await ask(model);
    const ms = performance.now() - started;
    out.statuses[status] = (out.statuses[status] ?? 0) + 1;
    out[group.group].push(ms);
    if (group.group === 'tail') out.tailModels.push(model);
    if (wasLoaded) return;
    out.cold.push({ model, ms });
    if (group.hotPids.has(await hostPid(model))) out.coldInHotHosts += 1;
  };
  const client = async (group) => {
    while (performance.now() < deadline) await request(group, group.pick());
  };
  const runGroup = (g) => {
    if (g.group === 'hot' && HOT_RATE > 0) return atFixedRate(HOT_RATE, seconds, () => request(g, g.pick())).then(({ calls }) => Promise.all(calls));
    return Promise.all(Array.from({ length: g.clients ?? Number(opts['hot-clients']) }, () => client(g)));
  };
  await Promise.all(groups.map(runGroup));
  out.span = { start: startUs, end: monotonicUs() };
  out.cpu = cpuSpent(cpuBefore, cpuByGroup(pid, hotPids));
  return out;
}

/** Windows of one phase as one: their answers and counts together, CPU summed, the first's start to the last's end. */
function pooled(windows) {
  const out = {
    hot: [],
    tail: [],
    cold: [],
    coldInHotHosts: 0,
    tailModels: [],
    statuses: {},
    cpu: {},
    span: { start: windows[0].span.start, end: windows.at(-1).span.end },
  };
  for (const w of windows) {
    for (const key of ['hot', 'tail', 'cold', 'tailModels']) out[key].push(...w[key]);
    out.coldInHotHosts += w.coldInHotHosts;
    for (const [status, n] of Object.entries(w.statuses)) out.statuses[status] = (out.statuses[status] ?? 0) + n;
    for (const [group, seconds] of Object.entries(w.cpu)) out.cpu[group] = round((out.cpu[group] ?? 0) + seconds);
  }
  return out;
}

/** Each interleaved pair's B over A2 (p99 and median of the hot models), and their median and spread. */
function pairRises(windows) {
  const each = windows.map((w) => ({
    a2P99: round(p99(w.a2.hot)),
    bP99: round(p99(w.b.hot)),
    p99RisePercent: rise(p99(w.b.hot), p99(w.a2.hot)),
    medianRisePercent: rise(median(w.b.hot), median(w.a2.hot)),
    a2ColdLoads: w.a2.cold.length,
    bLoads: w.b.cold.length,
    cpuSeconds: { a2: w.a2.cpu, b: w.b.cpu },
    monotonicUs: { a2: w.a2.span, b: w.b.span },
  }));
  const spread = (values) => ({ median: round(median(values)), min: Math.min(...values), max: Math.max(...values) });
  return { each, p99RisePercent: spread(each.map((e) => e.p99RisePercent)), medianRisePercent: spread(each.map((e) => e.medianRisePercent)) };
}

/**
 * Up to LOADED_TAIL of `candidates` (in order, each once) that are loaded now in a host holding no
 * hot model: A2's client then loads nothing, and adds no request to a hot model's host.
 */
async function loadedAwayFrom(hotPids, candidates) {
  const chosen = [];
  for (const model of new Set(candidates)) {
    if (chosen.length === LOADED_TAIL) break;
    const [d] = await (await fetch(`${server.management}/models/${model}`)).json();
    if (d.loaded && d.workers[0]?.pid !== undefined && !hotPids.has(d.workers[0].pid)) chosen.push(model);
  }
  if (chosen.length === 0) throw new Error('no loaded model in a host without a hot model, for phase A2: a larger --budget-mb');
  return chosen;
}

/** CLOCK_MONOTONIC in µs, the clock of a V8 CPU profile's timestamps. */
function monotonicUs() {
  return Number(process.hrtime.bigint() / 1000n);
}

/**
 * CPU seconds so far: the front end's own, each worker process's (by pid), those of its workers
 * that have ended (the front end's reaped children), and this script's.
 */
function cpuByGroup(pid, hotPids) {
  const hosts = new Map(childPids(pid).map((child) => [child, cpuSeconds(child)]));
  return { frontEnd: cpuSeconds(pid), hosts, hotPids, reaped: reapedCpuSeconds(pid), bench: process.cpuUsage() };
}

function cpuSpent(before, after) {
  let hotHosts = 0;
  let otherHosts = after.reaped - before.reaped;
  for (const [pid, seconds] of after.hosts) {
    const spent = seconds - (before.hosts.get(pid) ?? 0);
    if (after.hotPids.has(pid)) hotHosts += spent;
    else otherHosts += spent;
  }
  // Ended meanwhile: their whole time is in `reaped`, what they had spent before is not this phase's.
  for (const [pid, seconds] of before.hosts) if (!after.hosts.has(pid)) otherHosts -= seconds;
  const bench = process.cpuUsage(before.bench);
  return {
    frontEnd: round(after.frontEnd - before.frontEnd),
    hotHosts: round(hotHosts),
    otherHosts: round(otherHosts),
    bench: round((bench.user + bench.system) / 1e6),
  };
}

/** CPU seconds of a process's children that have ended and been waited for (/proc stat's cutime, cstime). */
function reapedCpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[13]) + Number(fields[14])) / 100;
  } catch {
    return 0;
  }
}

/** The pid of the process a loaded model's worker runs in. */
async function hostPid(model) {
  const [d] = await (await fetch(`${server.management}/models/${model}`)).json();
  return d.workers[0]?.pid;
}

function rise(after, before) {
  return round((100 * (after - before)) / before);
}

async function ask(model) {
  const res = await fetch(`${server.inference}/predictions/${model}`, { method: 'POST', body: digit, signal: AbortSignal.timeout(120_000) });
  await res.arrayBuffer();
  return res.status;
}

async function isLoaded(model) {
  const [d] = await (await fetch(`${server.management}/models/${model}`)).json();
  return d.loaded;
}

async function unloadCount() {
  const text = await (await fetch(server.inference.replace(/:\d+$/, `:${metricsPort()}`) + '/metrics')).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('ts_model_unloads_total{'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

function metricsPort() {
  return /metrics_address=http:\/\/127\.0\.0\.1:(\d+)/.exec(readFileSync(join(server.dir, 'config.properties'), 'utf8'))[1];
}

/** Samples the tree's PSS and its workers' each second until stop(). */
function sampleMemory(pid) {
  const tree = [];
  const workers = [];
  const take = () => {
    tree.push(treePssMb(pid));
    workers.push(childPids(pid).reduce((sum, child) => sum + treePssMb(child), 0));
  };
  take();
  const timer = setInterval(take, 1000);
  return {
    stop() {
      clearInterval(timer);
      take();
      return {
        treeMaxMb: Math.max(...tree),
        treeMedianMb: median(tree),
        workersMaxMb: Math.max(...workers),
        workersMedianMb: median(workers),
        samples: tree.length,
      };
    },
  };
}

/** Cumulative weights of ranks 1..n with weight 1/rank^s. */
function zipfWeights(n, s) {
  const cumulative = [];
  let total = 0;
  for (let rank = 1; rank <= n; rank++) cumulative.push((total += 1 / rank ** s));
  return cumulative.map((c) => c / total);
}

function pickIndex(cumulative) {
  const r = Math.random();
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cumulative[mid] < r) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function summary(values) {
  return { count: values.length, median: round(median(values) ?? 0), p99: round(p99(values)), max: round(values.length ? Math.max(...values) : 0) };
}

function p99(values) {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))];
}

function round(v) {
  return Math.round(v * 10) / 10;
}

function stamp() {
  return new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 13);
}

// A load's decision in the front end (models/model-memory.ts), in process: 1,000 models
// registered, 600 loaded in shared hosts of 30, the budget full, so that each load on demand
// unloads the least recently used idle model. Measures the event loop's time a decision holds it
// (ModelMemory.loadOnDemand, which makes room and starts the load), in µs, while the ten busiest
// models are used between loads, as bench/many-models.mjs's phase C does with 642 loaded.
// The models and workers are stand-ins with what the budget reads of them; a shared worker's
// residentBytes walks its host's tenants as workers/worker-process.ts's does.
//   node bench/memory-decision.mjs [--server-root DIR] [--models 1000] [--loaded 600] [--loads 2000]
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    'server-root': { type: 'string', default: '.' },
    models: { type: 'string', default: '1000' },
    loaded: { type: 'string', default: '600' },
    loads: { type: 'string', default: '2000' },
    'per-host': { type: 'string', default: '30' },
    'loads-per-look': { type: 'string', default: '8' },
  },
});
const root = resolve(args['server-root']);
const { ModelMemory } = await import(join(root, 'dist/src/models/model-memory.js'));
const { ModelRegistry } = await import(join(root, 'dist/src/models/model-registry.js'));

const MB = 2 ** 20;
const MODELS = Number(args.models);
const LOADED = Number(args.loaded);
const LOADS = Number(args.loads);
const PER_HOST = Number(args['per-host']);
// The growth look (GROWTH_CHECK_MS, each second) between this many loads: phase C loaded 8 a second.
const LOADS_PER_LOOK = Number(args['loads-per-look']);

/** A shared host as the budget reads it: its PSS, and its tenants' measured loads. */
class Host {
  tenants = new Set();
  pss = 25 * MB;
  addedBytes() {
    let bytes = 0;
    for (const t of this.tenants) bytes += t.loadBytes ?? 0;
    return bytes;
  }
}

class Worker {
  state = 'MODEL_LOADED';
  loadBytes = 1.3 * MB;
  constructor(host) {
    this.host = host;
    host.tenants.add(this);
    host.pss += this.loadBytes;
  }
  residentBytes() {
    const { host } = this;
    return this.loadBytes + Math.max(0, host.pss - host.addedBytes()) / Math.max(1, host.tenants.size);
  }
  freedBytes() {
    return this.host.tenants.size <= 1 ? this.residentBytes() : this.loadBytes;
  }
  leave() {
    this.host.tenants.delete(this);
    this.host.pss -= this.loadBytes;
  }
}

const hosts = [];
function hostWithRoom() {
  let host = hosts.find((h) => h.tenants.size < PER_HOST);
  if (!host) hosts.push((host = new Host()));
  return host;
}

let clock = 1;
class FakeModel {
  workers = [];
  unloadedFlag = true;
  outstanding = 0;
  lastUsed = 0;
  stopped = false;
  settings = { minWorkers: 1, maxWorkers: 1, sequence: undefined };
  queue = { size: 0 };
  constructor(i) {
    this.name = `m${i}`;
    this.version = '1.0';
    this.spec = { dir: '/nonexistent', manifest: { model: { serializedFile: undefined } } };
    const model = this;
    this.pool = {
      sharesHost: true,
      get size() {
        return model.workers.length;
      },
      get workers() {
        return model.workers;
      },
    };
  }
  get loaded() {
    return !this.unloadedFlag;
  }
  get unloadable() {
    return this.outstanding === 0 && this.queue.size === 0;
  }
  load() {
    this.unloadedFlag = false;
    this.workers.push(new Worker(hostWithRoom()));
    return Promise.resolve({ ok: true, running: 1 });
  }
  unload() {
    this.unloadedFlag = true;
    for (const w of this.workers.splice(0)) w.leave();
    return Promise.resolve();
  }
  /** A request: Model.enqueue's lastUsed and its use hook, answered at once. */
  use() {
    this.lastUsed = clock++;
    this.onUse?.(this);
  }
}

const registry = new ModelRegistry();
const models = Array.from({ length: MODELS }, (_, i) => new FakeModel(i));
for (const m of models) registry.add(m);
for (const m of models.slice(0, LOADED)) await m.load();
const used = (bytes) => bytes;
let perModel = 0;
for (const m of models.slice(0, LOADED)) perModel += m.workers[0].residentBytes();
// Full: the budget (less its 2% headroom) holds the loaded models and no more.
const budgetBytes = used(perModel + 0.5 * MB) / 0.98;
const memory = new ModelMemory(registry, { budgetBytes, maxLoaded: 0 }, () => {});
for (const m of models) {
  m.loadOnDemand = memory.loadOnDemand;
  if (memory.modelUsed) m.onUse = memory.modelUsed;
}
for (const m of models.slice(0, LOADED)) m.use();

const busy = models.slice(0, 10);
const samples = [];
const looks = [];
/** The growth look as its timer runs it: a full measure where the code has one, then holdToBudget. */
function growthLook() {
  const t0 = performance.now();
  memory.measureAll?.();
  memory.holdToBudget();
  looks.push((performance.now() - t0) * 1000);
}
let next = LOADED;
let failed = 0;
const started = performance.now();
for (let i = 0; i < LOADS; i++) {
  for (const m of busy) m.use();
  if (i % LOADS_PER_LOOK === 0) growthLook();
  // An unloaded model's request: its decision, timed; then its load runs (unloads, load).
  let m = models[next++ % MODELS];
  while (m.loaded) m = models[next++ % MODELS];
  const t0 = performance.now();
  const refusal = memory.loadOnDemand(m);
  samples.push((performance.now() - t0) * 1000);
  if (refusal) failed++;
  m.use();
  await new Promise((r) => setImmediate(r));
}
const seconds = (performance.now() - started) / 1000;
// What the budget counted at the end against what the hosts hold (the sum of their PSS).
const countedMb = memory.heldSum === undefined ? undefined : Number((memory.heldSum / MB).toFixed(1));
const hostsMb = Number((hosts.reduce((s, h) => s + h.pss, 0) / MB).toFixed(1));
const loaded = models.filter((m) => m.loaded).length;
samples.sort((a, b) => a - b);
const q = (p) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))].toFixed(1);
const mean = samples.reduce((s, x) => s + x, 0) / samples.length;
console.log(
  JSON.stringify({
    root,
    models: MODELS,
    loadedAtStart: LOADED,
    loadedAtEnd: loaded,
    hosts: hosts.length,
    countedMb,
    hostsMb,
    loads: LOADS,
    refused: failed,
    decisionUs: { mean: Number(mean.toFixed(1)), p50: Number(q(0.5)), p90: Number(q(0.9)), p99: Number(q(0.99)), max: Number(q(1)) },
    growthLookUs: { looks: looks.length, mean: Number((looks.reduce((s, x) => s + x, 0) / looks.length).toFixed(1)) },
    seconds: Number(seconds.toFixed(2)),
  }),
);

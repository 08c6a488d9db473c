/**
 * @module models/model-memory
 * Which registered models are loaded (have workers), within a memory budget
 * (model_memory_budget_mb) and a count (max_loaded_models). Loading one more past either first
 * unloads the least recently used idle models (no job queued or running, no load under way): their
 * workers are retired, the models stay registered, and each loads again on its next request, which
 * waits in its queue for the load. While the models loaded are too busy to make room, the load
 * waits for one to fall idle (its jobs wait in its queue, as for a worker); a model larger than
 * the whole budget is answered 507. A model with no worker (minWorkers 0) counts once its scaler
 * starts one, which it does only as admitted here (admitWorkers), as its scale-ups.
 *
 * Every model but a stateful one (its sequences' state lives in its workers) is a candidate,
 * whatever its minWorkers: TorchServe gives every model at least one
 * worker by default (default_workers_per_model), so pinning models with workers would pin them all
 * and the budget would mean nothing; and with no key set the budget is most of the machine's
 * memory, so unloading happens only where loading one more would otherwise risk the kernel's
 * out-of-memory kill.
 *
 * A loaded model's size is its workers' measured memory (PSS from /proc: shared library pages
 * split between the processes that share them); a worker still starting, and a model never
 * loaded, count as an estimate: 1.25x the model file (ModelMesh's rule) plus a worker's base.
 * A worker in a shared host (workers/shared-hosts.ts) counts what its load added to the host's
 * PSS, measured before and after (loads take turns in a host), plus an equal share of the rest
 * of the host (node, onnxruntime); its estimate has a shared worker's base, not a process's.
 * Unloading it frees only what its load added, unless it is its host's last worker.
 *
 * A decision reads a running sum of the loaded models' bytes, not every loaded model: each is
 * measured again where something changed it (its load, unload, an operator's scale, its
 * unregistration, a scale-up admitted) and all of them each GROWTH_CHECK_MS, which sees what they
 * grew by and what the pools did meanwhile (scale-downs, restarts). The least recently used order
 * is kept as requests come (modelUsed), so a decision reads the first few idle models, not a sort.
 *
 * Loaded models grow after their load (onnxruntime's arenas, the handler's heap, as they serve):
 * while any is loaded the sum is looked at every GROWTH_CHECK_MS, and past the budget the least
 * recently used idle models are unloaded until it holds again, as for a load. Only loads made room
 * before, and a 1,000-model run stayed past the budget through its phases without one. Loads and
 * this look both leave LOAD_HEADROOM of the budget to the memory loads hold while under way.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { tsError, type TsError } from '../errors.js';
import type { Model } from './model.js';
import type { ModelRegistry } from './model-registry.js';

/**
 * A worker's PSS beside its model's weights, where nothing of it was measured yet: node, the
 * handler, onnxruntime's library and a session's arenas. An mnist worker (1.2 MB of weights) here
 * held 79-89 MB PSS beside others (RSS 142 MB), and 78 MB undercounted 21 of them by 3.5% in
 * bench/many-models.mjs; a worker with no onnxruntime (the tests' echo handler) 30 MB: the
 * estimate errs on the side of the machine.
 */
export const WORKER_BASE_BYTES = 84 * 2 ** 20;
/**
 * A worker's PSS beside its model's weights in a shared host, where nothing of it was measured
 * yet: one more mnist in a running host added 1.3 MB (issue 33), and a host of 32 models splits
 * its ~25 MB of node and onnxruntime 32 ways; rounded up, as WORKER_BASE_BYTES is.
 */
export const SHARED_WORKER_BASE_BYTES = 4 * 2 ** 20;
/** How often loads waiting for room look again, besides when a model falls idle. */
const RETRY_MS = 100;
/** How often, while any model is loaded, their memory is held to the budget between loads. */
export const GROWTH_CHECK_MS = 1000;
/**
 * The share of the budget the loaded models leave to loads under way: a session's creation holds
 * memory it frees once open (the model as read, the graph before optimisation), which no reading
 * between loads sees. With the rest counted, the workers' PSS sampled each second still peaked
 * 13 MB (0.8%) past a 1,600 MB budget in a 1,000-model run with 145 loads in 40 s; with 2% left,
 * 4 of 12 such runs on a loaded machine (load 6-11, unloads slower to take effect) peaked 4-22 MB
 * past it (2026-12-07): 5%.
 */
export const LOAD_HEADROOM = 0.05;
/** ModelMesh's estimate of a model's memory from its file's size. */
const FILE_FACTOR = 1.25;

export interface MemoryPolicy {
  readonly budgetBytes: number;
  /** 0: no limit. */
  readonly maxLoaded: number;
  /**
   * Worker processes' memory that is no model's and counts against the budget all the same: the
   * spare shared host (node and onnxruntime, ~25 MB), which bench/many-models.mjs saw past it.
   */
  readonly unattributedBytes?: () => number;
  /**
   * How often the loaded models' memory is looked at, in milliseconds: GROWTH_CHECK_MS unless
   * told (the in-process tests look every few milliseconds rather than wait seconds).
   */
  readonly growthCheckMs?: number;
}

export type LoadReason = 'register' | 'request' | 'scale';
export type UnloadReason = 'memory_budget' | 'max_loaded_models';

/** A load finished (ok or not), or a model was unloaded to make room: for the metrics. */
export type ResidencyEvent =
  | { readonly kind: 'loaded'; readonly model: Model; readonly reason: LoadReason; readonly seconds: number; readonly ok: boolean }
  | { readonly kind: 'unloaded'; readonly model: Model; readonly reason: UnloadReason };

export type ResidencyListener = (event: ResidencyEvent) => void;

/** What making room decided: go ahead once `ready` (the unloads) resolves, or the 507. */
export type Room = { readonly ready: Promise<void> } | { readonly error: TsError };

export class ModelMemory {
  private readonly registry: ModelRegistry;
  private readonly policy: MemoryPolicy;
  private readonly log: (message: string) => void;
  private readonly listeners: ResidencyListener[] = [];
  /** Loads decided and waiting for their unloads: their bytes are spoken for. */
  private readonly reserved = new Map<Model, number>();
  /** Models being unloaded: their workers hold their bytes until they have exited. */
  private readonly unloading = new Map<Model, number>();
  /** Each model's last measured bytes a worker: its estimate while unloaded. */
  private readonly measured = new WeakMap<Model, number>();
  private readonly fileEstimates = new WeakMap<Model, number>();
  /** Unloaded models asked for while the loaded ones were too busy to make room, oldest first. */
  private readonly waiting: Model[] = [];
  /**
   * Each loaded model's bytes as last measured (modelBytes), and their sum: what a decision adds
   * up, kept as models load, unload and are measured. Walking every loaded model at each decision
   * held the front end 3.3 ms a load with 642 loaded (bench/results/20261207-0333-many-models-busy3.txt):
   * each shared worker's size walks its host's tenants, ~20,000 steps.
   */
  private readonly held = new Map<Model, number>();
  private heldSum = 0;
  /** Loaded models with workers, as last measured: what max_loaded_models counts. */
  private readonly withWorkers = new Set<Model>();
  /** Registered stateful models, as last measured: never unloaded (heldForGood). */
  private readonly stateful = new Set<Model>();
  /** Models whose workers may have changed since measured: measured again at the next decision. */
  private readonly dirty = new Set<Model>();
  /** Models with a load or scale under way (follow): measured at every decision until it is over. */
  private readonly changing = new Map<Model, number>();
  /**
   * Loaded models, least recently used first: moved to the end as they are used (modelUsed), not
   * sorted at each decision; only one loaded without a request (registered, scaled) is sorted in.
   */
  private readonly byAge = new Set<Model>();
  /** performance.now() of the last full measure (measureAll); every GROWTH_CHECK_MS while any model is loaded. */
  private measuredAt = Number.NEGATIVE_INFINITY;
  /** A model joined byAge otherwise than by a request: sorted in by lastUsed before the order is read. */
  private outOfOrder = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private growthTimer: NodeJS.Timeout | undefined;
  /** The policy's growthCheckMs, GROWTH_CHECK_MS unless told. */
  private readonly growthCheckMs: number;

  constructor(registry: ModelRegistry, policy: MemoryPolicy, log: (message: string) => void) {
    this.registry = registry;
    this.policy = policy;
    this.log = log;
    this.growthCheckMs = policy.growthCheckMs ?? GROWTH_CHECK_MS;
  }

  on(listener: ResidencyListener): void {
    this.listeners.push(listener);
  }

  /** A job for an unloaded model (Model.loadOnDemand): starts its load after making room, or answers the 507. */
  readonly loadOnDemand = (model: Model): TsError | undefined => {
    if (this.reserved.has(model) || this.waiting.includes(model)) return undefined;
    const workers = Math.max(1, model.settings.minWorkers);
    const never = this.refusal(model, workers);
    if (never) return never;
    if (this.waiting.length > 0 || !this.tryLoad(model, workers)) this.waitForRoom(model);
    return undefined;
  };

  /** A job for a loaded model with no worker (minWorkers 0): the 507 of a first worker that could never fit. */
  readonly cannotStart = (model: Model): TsError | undefined => this.refusal(model, 1);

  /**
   * The scaler's question before it starts `count` more workers of a loaded model (its first
   * worker for minWorkers 0, or a scale-up): how many fit now. Where unloading idle models would
   * make room, they are unloaded and the scaler's next look finds it; while the models loaded are
   * too busy, none is admitted and the requests wait in the queue.
   */
  readonly admitWorkers = (model: Model, count: number): number => {
    if (this.reserved.has(model)) return 0;
    for (let fits = count; fits > 0; fits--) {
      if (this.shortOfRoom(model, fits) !== undefined) continue;
      // The scaler starts them once this returns: the next decision counts them.
      this.dirty.add(model);
      return fits;
    }
    const room = this.makeRoom(model, 1);
    if ('error' in room) return 0;
    this.reserved.set(model, this.workerBytes(model));
    void room.ready.catch(() => {}).then(() => this.reserved.delete(model));
    return 0;
  };

  /** The 507 of `workers` of `model` that would never fit, in the budget or beside the stateful models. */
  private refusal(model: Model, workers: number): TsError | undefined {
    return this.neverFits(model, workers) ?? this.heldForGood(model, workers);
  }

  /** A job was enqueued for `model` (Model.enqueue, after lastUsed): it is the most recently used. */
  readonly modelUsed = (model: Model): void => {
    this.byAge.delete(model);
    this.byAge.add(model);
  };

  /**
   * Counts `model`'s workers at every decision while `change` (a load, an operator's scale) is
   * under way, and once more after: its workers come and load meanwhile, and a decision that
   * missed them would let the budget be overrun.
   */
  follow<T>(model: Model, change: Promise<T>): Promise<T> {
    this.changing.set(model, (this.changing.get(model) ?? 0) + 1);
    return change.finally(() => {
      const left = (this.changing.get(model) ?? 1) - 1;
      if (left > 0) this.changing.set(model, left);
      else this.changing.delete(model);
      this.dirty.add(model);
    });
  }

  /** A loaded model fell idle: the loads waiting for room may go now. */
  readonly modelIdle = (): void => {
    if (this.waiting.length > 0) this.retryWaiting();
  };

  /** Starts `model`'s load if room can be made now; false if the models loaded are too busy. */
  private tryLoad(model: Model, workers: number): boolean {
    const room = this.makeRoom(model, workers);
    if ('error' in room) return false;
    this.reserved.set(model, workers * this.workerBytes(model));
    void this.loadWhenReady(model, room.ready);
    return true;
  }

  private waitForRoom(model: Model): void {
    this.log(`Model ${model.name} ${model.version} waits to load: the models loaded are busy and hold the room it needs`);
    this.waiting.push(model);
    // Besides a model falling idle, a load or unload ending may make room: looked at again shortly.
    this.retryTimer ??= setInterval(() => this.retryWaiting(), RETRY_MS);
    this.retryTimer.unref();
  }

  /**
   * Loads the waiting models in order, as far as room can be made; one stopped, loaded meanwhile,
   * or no longer asked for (its requests answered at their queue deadline) is dropped: loading it
   * would unload a model in use for nobody, and hold up the loads behind it.
   */
  private retryWaiting(): void {
    while (this.waiting.length > 0) {
      const model = this.waiting[0]!;
      const wanted = !model.stopped && model.loaded === false && model.queue.size > 0;
      if (wanted && !this.tryLoad(model, Math.max(1, model.settings.minWorkers))) break;
      this.waiting.shift();
    }
    if (this.waiting.length === 0 && this.retryTimer) {
      clearInterval(this.retryTimer);
      this.retryTimer = undefined;
    }
  }

  /**
   * Whether `workers` more workers of `model` fit now without unloading anything; undefined if so,
   * else what is short. A registration that does not fit is registered unloaded (model-service.ts).
   */
  shortOfRoom(model: Model, workers: number): string | undefined {
    this.dirty.add(model);
    const used = this.usedBytes();
    const short = this.shortfall(used, this.loadedCount(), model, workers);
    return short === undefined ? undefined : this.shortText(short);
  }

  /** The 507 of a model whose `workers` would not fit even in an empty budget; undefined if they would. */
  neverFits(model: Model, workers: number): TsError | undefined {
    const need = workers * this.workerBytes(model);
    return need > this.policy.budgetBytes ? this.noRoom(model, need, `the budget is ${mb(this.policy.budgetBytes)} MB (model_memory_budget_mb)`) : undefined;
  }

  /** The 507 of `model` when the loaded models that are never unloaded (stateful ones) leave it no room. */
  private heldForGood(model: Model, workers: number): TsError | undefined {
    this.measureChanged();
    const kept = [...this.stateful].filter((m) => m !== model && this.counts(m));
    const used = kept.reduce((sum, m) => sum + this.modelBytes(m), 0);
    const short = this.shortfall(used, kept.length, model, workers);
    if (short === undefined) return undefined;
    return this.noRoom(model, workers * this.workerBytes(model), `${this.shortText(short)}, held by stateful models, which are never unloaded`);
  }

  /**
   * Room for `workers` more workers of `model`: unloads the least recently used idle models until
   * they fit, or, when even all of them would not do, unloads none and answers the 507.
   */
  makeRoom(model: Model, workers: number): Room {
    this.dirty.add(model);
    let used = this.usedBytes();
    let count = this.loadedCount();
    let short = this.shortfall(used, count, model, workers);
    if (short === undefined) return { ready: Promise.resolve() };
    const chosen: Array<{ model: Model; reason: UnloadReason; bytes: number }> = [];
    for (const victim of this.idleByAge(model)) {
      if (short === undefined) break;
      const bytes = this.freedBytes(victim);
      chosen.push({ model: victim, reason: short === 'count' ? 'max_loaded_models' : 'memory_budget', bytes });
      used -= bytes;
      count -= 1;
      short = this.shortfall(used, count, model, workers);
    }
    if (short !== undefined) return { error: this.noRoom(model, workers * this.workerBytes(model), this.shortText(short)) };
    return { ready: Promise.all(chosen.map((c) => this.unload(c.model, c.reason, c.bytes, model))).then(() => {}) };
  }

  /** What the loaded models may hold: the budget less the loads' headroom. */
  private get roomBytes(): number {
    return this.policy.budgetBytes * (1 - LOAD_HEADROOM);
  }

  /** 'count' or 'memory' when `workers` more of `model` would not fit beside `used` bytes in `count` models. */
  private shortfall(used: number, count: number, model: Model, workers: number): 'count' | 'memory' | undefined {
    const joining = model.loaded && model.pool.size > 0 ? 0 : 1;
    if (this.policy.maxLoaded > 0 && count + joining > this.policy.maxLoaded) return 'count';
    if (used + workers * this.workerBytes(model) > this.roomBytes) return 'memory';
    return undefined;
  }

  private shortText(short: 'count' | 'memory'): string {
    return short === 'count'
      ? `${this.policy.maxLoaded} models are loaded already (max_loaded_models)`
      : `the budget of ${mb(this.policy.budgetBytes)} MB (model_memory_budget_mb) is full`;
  }

  private noRoom(model: Model, need: number, why: string): TsError {
    return tsError('TSS_ERR_MODEL_NO_ROOM', model.name, mb(need), why);
  }

  /** Unloads `model` for `why` (the model it makes room for, or the budget's growth). */
  private async unload(model: Model, reason: UnloadReason, bytes: number, why: Model | 'grown'): Promise<void> {
    const idleSec = model.lastUsed > 0 ? `, idle for ${Math.round((Date.now() - model.lastUsed) / 1000)} s` : '';
    const purpose = why === 'grown' ? 'the loaded models grew past the budget' : `to make room for ${why.name} ${why.version}`;
    this.log(`Model ${model.name} ${model.version} unloaded (${reason}): ${mb(bytes)} MB freed${idleSec}, ${purpose}`);
    this.unloading.set(model, bytes);
    // Its bytes are the unloading's from now on, not the loaded's.
    this.dirty.add(model);
    try {
      await model.unload();
    } finally {
      this.unloading.delete(model);
    }
    this.tell({ kind: 'unloaded', model, reason });
  }

  private async loadWhenReady(model: Model, ready: Promise<void>): Promise<void> {
    const started = performance.now();
    try {
      await ready;
    } finally {
      this.reserved.delete(model);
    }
    if (model.stopped) return;
    const result = await this.follow(model, model.load());
    this.loadDone(model, 'request', started, result.ok ? undefined : result.error.message);
    // Its waiting requests were answered with the failure (Model's failQueued): the next one loads anew.
    if (!result.ok && !model.stopped) await model.unload();
  }

  /** Tells the metrics and the log that `model`'s load begun at `started` is over. */
  loadDone(model: Model, reason: LoadReason, started: number, failure: string | undefined): void {
    const seconds = (performance.now() - started) / 1000;
    if (failure) this.log(`Model ${model.name} ${model.version} failed to load (${reason}) after ${seconds.toFixed(2)} s: ${failure}`);
    else this.log(`Model ${model.name} ${model.version} loaded (${reason}) in ${seconds.toFixed(2)} s`);
    this.tell({ kind: 'loaded', model, reason, seconds, ok: failure === undefined });
    this.watchGrowth();
  }

  /** Looks at the loaded models' memory every GROWTH_CHECK_MS while any is loaded. */
  private watchGrowth(): void {
    if (this.growthTimer) return;
    this.growthTimer = setTimeout(() => {
      this.growthTimer = undefined;
      this.measureAll();
      this.holdToBudget();
      if (this.withWorkers.size > 0) this.watchGrowth();
    }, this.growthCheckMs);
    this.growthTimer.unref();
  }

  /**
   * Past the budget with no load deciding (a load makes its own room): unloads the least recently
   * used idle models until the rest fit. Answers how many it unloads.
   */
  holdToBudget(): number {
    if (this.reserved.size > 0 || this.waiting.length > 0) return 0;
    let over = this.usedBytes() - this.roomBytes;
    if (over <= 0) return 0;
    let unloaded = 0;
    for (const victim of [...this.idleByAge(undefined)]) {
      if (over <= 0) break;
      const bytes = this.freedBytes(victim);
      over -= bytes;
      unloaded += 1;
      void this.unload(victim, 'memory_budget', bytes, 'grown').catch(() => {});
    }
    return unloaded;
  }

  /**
   * The loaded models that may be unloaded (not `keep`), least recently used first; a decision
   * takes the first few (the busy models, used last, come at the end).
   */
  private *idleByAge(keep: Model | undefined): Generator<Model> {
    if (this.outOfOrder) this.sortByAge();
    for (const m of this.byAge) if (m !== keep && !m.stopped && m.loaded && m.pool.size > 0 && m.unloadable) yield m;
  }

  private tell(event: ResidencyEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  /** How many models have workers (or are getting them), those whose load is decided among them; after usedBytes. */
  private loadedCount(): number {
    let count = this.withWorkers.size;
    for (const m of this.reserved.keys()) if (!this.withWorkers.has(m)) count++;
    return count;
  }

  /** A model the budget and max_loaded_models count: with workers (or getting them), or its load decided. */
  private counts(model: Model): boolean {
    return (model.loaded && model.pool.size > 0) || this.reserved.has(model);
  }

  /** The bytes counted against the budget now: the loaded models' as measured, and the loads' and unloads' under way. */
  private usedBytes(): number {
    this.measureChanged();
    let used = (this.policy.unattributedBytes?.() ?? 0) + this.heldSum;
    for (const bytes of this.reserved.values()) used += bytes;
    for (const bytes of this.unloading.values()) used += bytes;
    return used;
  }

  /**
   * Measures again the models whose workers changed (dirty, changing), or every registered model
   * where the last full measure is older than twice GROWTH_CHECK_MS (the growth look takes one
   * each GROWTH_CHECK_MS while any model is loaded).
   */
  private measureChanged(): void {
    if (performance.now() - this.measuredAt > 2 * this.growthCheckMs) {
      this.measureAll();
      return;
    }
    for (const m of this.dirty) this.measure(m);
    this.dirty.clear();
    for (const m of this.changing.keys()) this.measure(m);
  }

  /**
   * Measures every registered model, and puts the loaded ones in order of use again: once each
   * GROWTH_CHECK_MS, what models grew by as they serve, what the scaler and the pools changed
   * (scale-downs, restarts) and models unregistered are seen here.
   */
  private measureAll(): void {
    this.dirty.clear();
    for (const m of this.registry.all()) this.measure(m);
    // Unregistered since (stopped, out of the registry): counted no more.
    for (const kept of [this.held.keys(), this.withWorkers, this.byAge]) for (const m of kept) if (m.stopped) this.measure(m);
    for (const m of this.changing.keys()) this.measure(m);
    if (this.outOfOrder) this.sortByAge();
    // Added up anew: a running sum of fractions drifts.
    this.heldSum = 0;
    for (const bytes of this.held.values()) this.heldSum += bytes;
    this.measuredAt = performance.now();
  }

  /** Puts the loaded models in order of lastUsed again, after some joined it otherwise than by a request. */
  private sortByAge(): void {
    const byAge = [...this.byAge].sort((a, b) => a.lastUsed - b.lastUsed);
    this.byAge.clear();
    for (const m of byAge) this.byAge.add(m);
    this.outOfOrder = false;
  }

  /** Counts `model`'s workers as they are now in the running sum (held), the count and the order of use. */
  private measure(model: Model): void {
    const counted = !model.stopped && model.loaded;
    const bytes = counted ? this.modelBytes(model) : 0;
    this.heldSum += bytes - (this.held.get(model) ?? 0);
    if (bytes > 0) this.held.set(model, bytes);
    else this.held.delete(model);
    if (model.settings.sequence !== undefined) {
      if (counted) this.stateful.add(model);
      else this.stateful.delete(model);
    }
    if (counted && model.pool.size > 0) {
      this.withWorkers.add(model);
      // A model loaded without a request (registered, an operator's scale): sorted in by its lastUsed before it is next read.
      if (!this.byAge.has(model)) {
        this.byAge.add(model);
        this.outOfOrder = true;
      }
    } else {
      this.withWorkers.delete(model);
      this.byAge.delete(model);
    }
  }

  /** A loaded model's workers: measured where they have loaded, else estimated. */
  private modelBytes(model: Model): number {
    let total = 0;
    let measuredTotal = 0;
    let measuredCount = 0;
    for (const w of model.pool.workers) {
      const pss = w.residentBytes();
      if (pss === undefined) {
        total += this.workerBytes(model);
        continue;
      }
      total += pss;
      measuredTotal += pss;
      measuredCount += 1;
    }
    if (measuredCount > 0) this.measured.set(model, measuredTotal / measuredCount);
    return total;
  }

  /**
   * What unloading `model` frees: in a shared host only what its load added (the host's node and
   * onnxruntime stay for the others), where modelBytes counts a share of the host besides. An
   * outside review saw eviction free every model, those of an unrelated host too, and log 2.1 GB
   * "freed" against 1.04 GB held.
   */
  private freedBytes(model: Model): number {
    let total = 0;
    for (const w of model.pool.workers) total += w.freedBytes() ?? this.workerBytes(model);
    return total;
  }

  /** One worker of `model`: as last measured, else the estimate from its file. */
  private workerBytes(model: Model): number {
    return this.measured.get(model) ?? this.fileEstimate(model);
  }

  private fileEstimate(model: Model): number {
    let estimate = this.fileEstimates.get(model);
    if (estimate === undefined) {
      estimate = FILE_FACTOR * fileBytes(model) + (model.pool.sharesHost ? SHARED_WORKER_BASE_BYTES : WORKER_BASE_BYTES);
      this.fileEstimates.set(model, estimate);
    }
    return estimate;
  }
}

/** The model file's size (the manifest's serializedFile); 0 where there is none. */
function fileBytes(model: Model): number {
  const file = model.spec.manifest.model.serializedFile;
  if (!file) return 0;
  try {
    return statSync(join(model.spec.dir, file)).size;
  } catch {
    return 0;
  }
}

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

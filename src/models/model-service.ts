/**
 * @module models/model-service
 * The management of models, whichever API asks: list, describe, register, scale, set the default
 * version, unregister, with TorchServe's defaults, checks, messages and errors (spec §4). REST
 * (http/management.ts) and gRPC (grpc/management.ts) parse their wire's parameters, call this and
 * render its answer, so both answer and fail alike. It is also the one way a model joins the
 * registry (add: start-up and snapshot restore, models/registration.ts, use it too) and the one
 * way a registration is undone (undo).
 *
 * Each change a call makes is told to the service's listeners as an event (the config snapshot
 * follows them, server.ts), and the call's answer waits for them: a listener's failure (the
 * snapshot the disk did not take, 507) is the call's answer, though the change stays in effect.
 */
import type { WorkerAndBatchSettings } from '../config/snapshot-file.js';
import type { ServerConfig } from '../config/server-config.js';
import { tsError } from '../errors.js';
import { shown } from '../shown.js';
import type { ScaleResult } from '../workers/worker-pool.js';
import type { Model, ModelDescription } from './model.js';
import { loadModel, type LoaderDeps, type RegisterRequest } from './model-loader.js';
import { ModelMemory, type LoadReason } from './model-memory.js';
import type { FailedRestore, ModelRegistry } from './model-registry.js';

/** A change of the registered models or their workers. */
export type ModelEvent =
  | { readonly kind: 'registered'; readonly model: Model }
  | { readonly kind: 'scaled'; readonly model: Model }
  | { readonly kind: 'default-changed'; readonly name: string; readonly version: string }
  | { readonly kind: 'unregistered'; readonly name: string; readonly version: string | undefined };

/** Follows the changes; a rejection fails the call that made the change (which stays in effect). */
export type ModelListener = (event: ModelEvent) => Promise<void> | void;

/**
 * A management call's answer, TorchServe's status text: `done`, `started` (the workers start in
 * the background: REST's 202) or `partial` (fewer workers than asked for are running: 206).
 */
export interface StatusAnswer {
  readonly outcome: 'done' | 'started' | 'partial';
  readonly message: string;
}

export interface ModelList {
  readonly nextPageToken?: string;
  readonly models: ReadonlyArray<{ modelName: string; modelUrl: string }>;
}

/** A register call; a number left out, or one out of its range, is not set (the default is used). */
export interface RegisterCall {
  readonly url: string | undefined;
  readonly modelName?: string | undefined;
  readonly handler?: string | undefined;
  readonly runtime?: string | undefined;
  readonly batchSize?: number | undefined;
  readonly maxBatchDelay?: number | undefined;
  readonly initialWorkers?: number | undefined;
  readonly responseTimeout?: number | undefined;
  readonly startupTimeout?: number | undefined;
  readonly synchronous: boolean;
  /** What the call asked for that is not done as written (http/params.ts): logged, and told back. */
  readonly warnings: readonly string[];
}

/** A scale call; without min_worker the minimum is 1, without max_worker the minimum. */
export interface ScaleCall {
  readonly minWorkers?: number | undefined;
  readonly maxWorkers?: number | undefined;
  readonly synchronous: boolean;
  readonly warnings: readonly string[];
}

export interface ModelServiceDeps {
  readonly config: ServerConfig;
  readonly registry: ModelRegistry;
  readonly loader: LoaderDeps;
  /** Where loads and unloads are told (info); the loader's log without it. */
  readonly residencyLog?: (message: string) => void;
  /** Memory the workers' processes hold outside any model (the spare shared host); none without it. */
  readonly unattributedBytes?: () => number;
  /** How often the memory budget looks at the loaded models (MemoryPolicy.growthCheckMs): GROWTH_CHECK_MS without it. */
  readonly growthCheckMs?: number;
}

/** Tells the caller the warnings of its call, at the point where the call is known to be checked. */
type Tell = (warnings: readonly string[]) => void;

export class ModelService {
  readonly registry: ModelRegistry;
  /** Which models are loaded, within the memory budget: its events feed the metrics. */
  readonly memory: ModelMemory;
  private readonly config: ServerConfig;
  private readonly loader: LoaderDeps;
  private readonly listeners: ModelListener[] = [];
  private stopped = false;
  private readonly residencyLog: (message: string) => void;

  constructor(deps: ModelServiceDeps) {
    this.config = deps.config;
    this.registry = deps.registry;
    this.loader = deps.loader;
    this.residencyLog = deps.residencyLog ?? this.loader.log;
    const policy = {
      budgetBytes: this.config.modelMemoryBudget,
      maxLoaded: this.config.maxLoadedModels,
      unattributedBytes: deps.unattributedBytes,
      growthCheckMs: deps.growthCheckMs,
    };
    this.memory = new ModelMemory(this.registry, policy, this.residencyLog);
  }

  /** Follows every change made from now on. */
  on(listener: ModelListener): void {
    this.listeners.push(listener);
  }

  /** Register and unregister answer 405 while enable_model_api is off. */
  requireModelApi(): void {
    if (!this.config.enableModelApi) throw tsError('TSS_ERR_MODEL_API_DISABLED');
  }

  /** The default versions, and the models a start could not restore, by name, `limit` (at most 100) from `start`. */
  list(limit = 100, start = 0): ModelList {
    const size = limit > 100 || limit < 0 ? 100 : limit;
    const from = Math.max(0, start);
    const failed = this.registry
      .failedRestores()
      .filter((f) => !this.registry.has(f.name) && this.registry.failedRestore(f.name) === f)
      .map((f) => ({ modelName: f.name, modelUrl: f.entry.marName }));
    const all = [...this.registry.defaults().map((m) => ({ modelName: m.name, modelUrl: m.spec.url })), ...failed].sort((a, b) =>
      a.modelName < b.modelName ? -1 : a.modelName > b.modelName ? 1 : 0,
    );
    const models = all.slice(from, from + size);
    return from + size <= all.length ? { nextPageToken: String(from + size), models } : { models };
  }

  /**
   * The describe answer: one version (the default without `version`), or with `all` every one; a
   * failed restore's included. `customized`: with what the handler says of itself.
   */
  async describe(name: string, version: string | undefined, customized: boolean): Promise<Array<ModelDescription | FailedDescription>> {
    if (version === 'all') return this.describeAll(name);
    const failed = this.registry.find(name, version) ? undefined : this.registry.failedRestore(name, version);
    return [failed ? describeFailed(failed) : await describeModel(this.registry.get(name, version), customized)];
  }

  /** `/models/{m}/all`: the registered versions, then those a start could not restore. */
  private describeAll(name: string): Array<ModelDescription | FailedDescription> {
    const failed = this.registry
      .failedRestores()
      .filter((f) => f.name === name)
      .map(describeFailed);
    const registered = failed.length > 0 && !this.registry.has(name) ? [] : this.registry.versions(name).map((m) => m.describe());
    return [...registered, ...failed];
  }

  /**
   * Registers the archive `call.url` names and starts its workers; synchronous, waits for them,
   * and a registration whose workers fail to load is undone. `tell` hears the call's warnings.
   */
  async register(call: RegisterCall, tell: Tell = () => {}): Promise<StatusAnswer> {
    this.requireModelApi();
    if (call.url === undefined) throw tsError('TSS_ERR_HTTP_BAD_REQUEST', 'Parameter url is required.');
    this.warn(`Register ${shown(call.url)}`, call.warnings, tell);
    this.withinWorkerLimit('initial_workers', call.initialWorkers);
    const model = await this.join({
      url: call.url,
      modelName: call.modelName,
      handler: call.handler,
      runtime: call.runtime,
      batchSize: positive(call.batchSize),
      maxBatchDelay: nonNegative(call.maxBatchDelay),
      responseTimeout: positive(call.responseTimeout),
      startupTimeout: nonNegative(call.startupTimeout),
      initialWorkers: Math.max(0, call.initialWorkers ?? this.config.defaultWorkersPerModel),
      loadedAtStartup: false,
    });
    const { minWorkers, maxWorkers } = model.settings;
    const label = `Model "${model.name}" Version: ${model.version}`;
    const tooLarge = this.memory.neverFits(model, minWorkers);
    if (tooLarge) {
      await this.undo(model);
      throw tooLarge;
    }
    // Past the budget it is registered unloaded: no model is unloaded for one nobody asked of yet.
    const short = minWorkers === 0 ? undefined : this.memory.shortOfRoom(model, minWorkers);
    if (short !== undefined) await model.unload();
    // The workers start whether or not the change can be saved: the registration is in effect.
    const scaling = minWorkers === 0 || short !== undefined ? undefined : this.timedLoad(model, 'register', model.scale(minWorkers, maxWorkers));
    await this.tell({ kind: 'registered', model });
    if (short !== undefined) {
      this.residencyLog(`${label} registered unloaded (${short}): its first request loads it`);
      return done(`${label} registered, not loaded: ${short}; its first request loads it`);
    }
    if (!scaling) return done(`${label} registered with 0 initial workers. Use scale workers API to add workers for the model.`);
    if (!call.synchronous) return this.inBackground(scaling);
    const result = await scaling;
    if (!result.ok) {
      // Unregistered meanwhile: someone else's undoing, and this call's answer is their 404.
      if (model.stopped) throw result.error;
      // The workers failed to load: undo this registration, and only this one.
      await this.undo(model);
      throw tsError('TSS_ERR_WORKER_START_FAILED', model.name, model.version);
    }
    if (result.running < minWorkers) return { outcome: 'partial', message: 'Workers scaling in progress...' };
    return done(`${label} registered with ${result.running} initial workers`);
  }

  /** Scales the named version's workers (the default version's without `version`). */
  async scale(name: string, version: string | undefined, call: ScaleCall, tell: Tell = () => {}): Promise<StatusAnswer> {
    const model = this.registry.get(name, version);
    const min = call.minWorkers ?? 1;
    const max = call.maxWorkers ?? min;
    if (max < min) throw tsError('TSS_ERR_WORKER_SCALE_INVALID');
    if (min < 0) throw tsError('TSS_ERR_WORKER_SCALE_NEGATIVE', min);
    this.withinWorkerLimit('min_worker', min);
    this.withinWorkerLimit('max_worker', max);
    this.warn(`Scale ${shown(model.name)}`, call.warnings, tell);
    const scaling = this.scaleWithinMemory(model, min, max);
    await this.tell({ kind: 'scaled', model });
    if (!call.synchronous) return this.inBackground(scaling);
    const result = await scaling;
    if (!result.ok) throw model.stopped ? result.error : tsError('TSS_ERR_WORKER_START_FAILED', model.name, version ?? 'null');
    if (result.running < min) return { outcome: 'partial', message: 'Workers scaling in progress...' };
    return done(`Workers scaled to ${min} for model: ${model.name}${version ? `, version: ${version}` : ''}`);
  }

  async setDefault(name: string, version: string): Promise<StatusAnswer> {
    this.registry.setDefault(name, version);
    await this.tell({ kind: 'default-changed', name, version });
    return done(`Default version successfully updated for model "${name}" to "${version}"`);
  }

  /**
   * Unregisters the named version (the default one without `version`), or forgets a failed
   * restore; the model answers what it has enqueued (within unregister_model_timeout) first.
   */
  async unregister(name: string, version: string | undefined): Promise<StatusAnswer> {
    this.requireModelApi();
    if (!this.registry.find(name, version) && this.registry.forgetFailed(name, version)) {
      await this.tell({ kind: 'unregistered', name, version });
      return done(`Model "${name}" unregistered`);
    }
    const model = this.registry.remove(name, version);
    const told = this.tell({ kind: 'unregistered', name: model.name, version: model.version });
    told.catch(() => {});
    // Its workers leave the budget's count as they stop, not at the next full measure.
    await this.memory.follow(model, model.stop(this.config.unregisterModelTimeout * 1000));
    await told;
    return done(`Model "${model.name}" unregistered`);
  }

  /** Registers a start-up model (models/registration.ts): as register, with no answer to wait for the change's listeners. */
  /** From the server's stop on, no model joins: one still loading is closed when it has loaded. */
  stop(): void {
    this.stopped = true;
  }

  async add(request: RegisterRequest): Promise<Model> {
    const model = await this.join(request);
    this.tell({ kind: 'registered', model }).catch(() => {});
    return model;
  }

  /**
   * A start-up model's workers (models/registration.ts): started as the memory budget allows; past
   * it, or larger than all of it, the model stays registered unloaded, said in the log, and its
   * first request loads it (or is answered 507).
   */
  startWorkers(model: Model): Promise<ScaleResult> {
    const { minWorkers, maxWorkers } = model.settings;
    const short = minWorkers === 0 ? undefined : (this.memory.neverFits(model, minWorkers)?.message ?? this.memory.shortOfRoom(model, minWorkers));
    if (short === undefined) return this.timedLoad(model, 'register', model.scale(minWorkers, maxWorkers));
    this.residencyLog(`Model ${model.name} ${model.version} starts unloaded (${short}): its first request loads it`);
    return model.unload().then(() => ({ ok: true, running: 0 }));
  }

  /**
   * The one way a model joins the registry, whatever asked for it: loads the archive (model-loader.ts)
   * and adds the model; one the registry refuses is undone, so nothing of it is left behind. Its
   * workers, and telling the listeners, are the caller's.
   */
  private async join(request: RegisterRequest): Promise<Model> {
    if (this.stopped) throw tsError('TSS_ERR_SERVER_STOPPING');
    const model = await loadModel(request, this.loader);
    if (this.stopped) {
      // The stop's snapshot and drain did not see it: kept, it would be answered 200 and be lost.
      await model.close();
      throw tsError('TSS_ERR_SERVER_STOPPING');
    }
    model.loadOnDemand = this.memory.loadOnDemand;
    model.onIdle = this.memory.modelIdle;
    model.onUse = this.memory.modelUsed;
    model.admitWorkers = this.memory.admitWorkers;
    model.cannotStart = this.memory.cannotStart;
    try {
      this.registry.add(model);
    } catch (err) {
      await this.undo(model);
      throw err;
    }
    return model;
  }

  /**
   * Undoes a registration: takes out `model` itself, if it is still registered (never a newer
   * registration of the same version), and closes it. Whether the change is saved is not waited for.
   */
  private async undo(model: Model): Promise<void> {
    if (this.registry.removeExactly(model)) this.tell({ kind: 'unregistered', name: model.name, version: model.version }).catch(() => {});
    await this.memory.follow(model, model.close());
  }

  /**
   * An operator's scale: room is made first for the workers it adds (unloading idle models), and
   * a scale that cannot fit is answered 507, before anything changes.
   */
  private scaleWithinMemory(model: Model, min: number, max: number): Promise<ScaleResult> {
    const adding = model.loaded ? min - model.pool.size : min;
    if (adding <= 0) return this.memory.follow(model, model.scale(min, max));
    const room = this.memory.makeRoom(model, adding);
    if ('error' in room) throw room.error;
    const scaling = this.memory.follow(
      model,
      room.ready.then(() => model.scale(min, max)),
    );
    return model.loaded ? scaling : this.timedLoad(model, 'scale', scaling);
  }

  /** `scaling`, told to the memory's listeners as a load for `reason` when it is over. */
  private timedLoad(model: Model, reason: LoadReason, scaling: Promise<ScaleResult>): Promise<ScaleResult> {
    const started = performance.now();
    return this.memory.follow(model, scaling).then((r) => {
      if (!model.stopped) this.memory.loadDone(model, reason, started, r.ok ? undefined : r.error.message);
      return r;
    });
  }

  /** Tells every listener; rejects with the first failure once all have heard. */
  private async tell(event: ModelEvent): Promise<void> {
    const heard = await Promise.allSettled(this.listeners.map(async (listener) => listener(event)));
    const failed = heard.find((h): h is PromiseRejectedResult => h.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** 202's answer: the workers start in the background; a failure shows in describe and the log. */
  private inBackground(scaling: Promise<ScaleResult>): StatusAnswer {
    scaling.then(
      (r) => {
        if (!r.ok) this.loader.log(`worker scaling failed: ${r.error.message}`);
      },
      () => {},
    );
    return { outcome: 'started', message: 'Processing worker updates...' };
  }

  private warn(what: string, warnings: readonly string[], tell: Tell): void {
    for (const warning of warnings) this.loader.log(`${what}: ${warning}`);
    tell(warnings);
  }

  /**
   * A worker count a client asked for is refused above max_workers_per_model (400), at once: each
   * worker is a process forked on the event loop, and ten thousand of them blocked the server for
   * seconds and would take the machine's memory. Refused, not cut, as the client is there to read why.
   */
  private withinWorkerLimit(param: string, asked: number | undefined): void {
    const limit = this.config.maxWorkersPerModel;
    if (asked !== undefined && asked > limit) throw tsError('TSS_ERR_WORKER_LIMIT', param, asked, limit);
  }
}

function done(message: string): StatusAnswer {
  return { outcome: 'done', message };
}

/**
 * A version a snapshot named that the start could not restore, as TorchServe describes a model
 * it keeps registered with no worker: its snapshot settings and no workers; tsserve adds
 * `status` FAILED and the `error` that says why.
 */
export interface FailedDescription extends WorkerAndBatchSettings {
  modelName: string;
  modelVersion: string;
  modelUrl: string;
  runtime: string;
  loadedAtStartup: true;
  serving: false;
  status: 'FAILED';
  error: string;
  workers: [];
  jobQueueStatus: { remainingCapacity: 0; pendingRequests: 0 };
}

function describeFailed(f: FailedRestore): FailedDescription {
  const { marName, runtimeType, minWorkers, maxWorkers, batchSize, maxBatchDelay, responseTimeout, startupTimeout } = f.entry;
  return {
    modelName: f.name,
    modelVersion: f.version,
    modelUrl: marName,
    runtime: runtimeType,
    minWorkers,
    maxWorkers,
    batchSize,
    maxBatchDelay,
    responseTimeout,
    startupTimeout,
    loadedAtStartup: true,
    serving: false,
    status: 'FAILED',
    error: `could not be restored from the config snapshot: ${f.reason}`,
    workers: [],
    jobQueueStatus: { remainingCapacity: 0, pendingRequests: 0 },
  };
}

/** One version's describe element; `customized`: with what its handler says of itself. */
async function describeModel(model: Model, customized: boolean): Promise<ModelDescription> {
  const described = model.describe();
  if (!customized) return described;
  const customizedMetadata = await model.customizedMetadata();
  return customizedMetadata === undefined ? described : { ...described, customizedMetadata };
}

function positive(n: number | undefined): number | undefined {
  return n !== undefined && n > 0 ? n : undefined;
}

function nonNegative(n: number | undefined): number | undefined {
  return n !== undefined && n >= 0 ? n : undefined;
}

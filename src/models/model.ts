/**
 * @module models/model
 * One registered model version: where its files are, its settings, its queue and its workers.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { ValidManifest } from '../archive/manifest.js';
import { workerAndBatchSettings, type ModelSettings } from '../config/model-config.js';
import type { WorkerAndBatchSettings } from '../config/snapshot-file.js';
import { TsError, tsError } from '../errors.js';
import { JobQueue, type BatchQueue } from '../batching/job-queue.js';
import { SequenceQueue } from '../batching/sequence-queue.js';
import { Job, type JobResponse } from '../batching/job.js';
import { WorkerPool, type BatchingState, type PoolDeps, type ScaleResult } from '../workers/worker-pool.js';
import type { ScalerState } from '../workers/scaler.js';
import { describeStatus } from '../workers/worker-state.js';
import { isRecord } from '../is-record.js';
import { formatLocalTime } from '../local-time.js';

export interface ModelSpec {
  readonly name: string;
  readonly version: string;
  /** The url string the model was registered with. */
  readonly url: string;
  readonly dir: string;
  /** True when `dir` is ours to delete on unregister. */
  readonly extracted: boolean;
  /** The archive's path inside the model store, as snapshots record it (a restart registers it again). */
  readonly marName: string;
  /** An archive the register API downloaded into the store: removed on unregister. */
  readonly downloadedFile: string | undefined;
  readonly manifest: ValidManifest;
  readonly handler: string;
  readonly runtime: string;
  readonly yaml: Record<string, unknown>;
  readonly loadedAtStartup: boolean;
}

/**
 * Asked when a job arrives for an unloaded model: starts loading it (making room first), or
 * answers why it cannot be loaded (507), synchronously, before the job is enqueued.
 */
export type LoadOnDemand = (model: Model) => TsError | undefined;

/** One version in the describe answer (GET /models/{name}), as TorchServe writes it. */
export interface ModelDescription extends WorkerAndBatchSettings {
  modelName: string;
  modelVersion: string;
  modelUrl: string;
  runtime: string;
  maxRetryTimeoutInSec: number;
  clientTimeoutInMills: number;
  parallelType: string;
  parallelLevel: number;
  deviceType: 'cpu';
  continuousBatching: boolean;
  useJobTicket: boolean;
  useVenv: boolean;
  stateful: boolean;
  sequenceMaxIdleMSec: number;
  sequenceTimeoutMSec: number;
  maxNumSequence: number;
  maxSequenceJobQueueSize: number;
  loadedAtStartup: boolean;
  /** tsserve's own: able to answer, now or after loading (false through a crash loop). */
  serving: boolean;
  /** tsserve's own: the model has its workers; false once unloaded to make room, until its next request loads it. */
  loaded: boolean;
  /** tsserve's own: when a prediction was last enqueued (ISO 8601), what unloading goes by; null: never. */
  lastUsed: string | null;
  /** tsserve's own: how the workers follow the load, and where they are (workers/scaler.ts). */
  autoscale: ScalerState;
  /** tsserve's own: the batching policy, and with adaptive batching the batch size and wait it chooses now. */
  batching: BatchingState;
  workers: WorkerDescription[];
  jobQueueStatus: { remainingCapacity: number; pendingRequests: number };
  /** With `customized=true`: what the handler says of itself. */
  customizedMetadata?: unknown;
}

export interface WorkerDescription {
  id: string;
  startTime: string;
  status: 'READY' | 'UNLOADING';
  memoryUsage: number;
  pid: number | undefined;
  gpu: boolean;
  gpuUsage: string;
  /** tsserve's own: the worker lives in a shared host (pid is the host's, which other models' workers share). */
  sharedHost: boolean;
}

export class Model {
  readonly spec: ModelSpec;
  readonly settings: ModelSettings;
  readonly queue: BatchQueue;
  readonly pool: WorkerPool;
  /** Jobs enqueued and not yet answered: queued or inside a batch. */
  private readonly outstanding = new Set<Job>();
  private stoppedFlag = false;
  /** Unloaded to make room (models/model-memory.ts): no workers until a job asks for it. */
  private unloadedFlag = false;
  /** Its load asked for (load), its turn not yet come. */
  private loadAsked = false;
  /**
   * What the pool reads while the model is unloaded: its settings with no worker wanted, so that
   * nothing in the pool starts one (a scaler following minWorkers) before the model loads again.
   */
  private unloadedSettings: ModelSettings;
  /** An unload or load under way; the next waits for it. */
  private transition: Promise<unknown> = Promise.resolve();
  /** Unloads and loads begun and not yet over. */
  private changes = 0;
  /** Date.now() of the last job enqueued; 0: never. */
  lastUsed = 0;
  /** Set by the model service: what a job for this model does while it is unloaded. */
  loadOnDemand: LoadOnDemand | undefined;
  /**
   * Set by the model service: how many of `count` more workers the memory budget admits now, asked
   * before the scaler starts any (a first request's worker with minWorkers 0, a scale-up).
   */
  admitWorkers: ((model: Model, count: number) => number) | undefined;
  /** Set by the model service: the 507 of a model with no worker whose first one would never fit. */
  cannotStart: LoadOnDemand | undefined;
  /** Set by the model service: told when the last job outstanding is answered. */
  onIdle: (() => void) | undefined;
  /** Set by the model service: told when a job is enqueued (lastUsed), for the memory budget's order of use. */
  onUse: ((model: Model) => void) | undefined;

  constructor(spec: ModelSpec, settings: ModelSettings, poolDeps: (model: Model) => PoolDeps) {
    this.spec = spec;
    this.settings = { ...settings };
    this.unloadedSettings = this.settings;
    this.queue = settings.sequence ? new SequenceQueue(settings.sequence) : new JobQueue(settings.jobQueueSize);
    const deps: PoolDeps = {
      ...poolDeps(this),
      admit: (count) => this.admitWorkers?.(this, count) ?? count,
      onStartFailed: (cause, restart) => this.failQueued(cause, restart),
    };
    this.pool = new WorkerPool(this.queue, () => (this.unloadedFlag ? this.unloadedSettings : this.settings), deps);
  }

  get name(): string {
    return this.spec.name;
  }

  get version(): string {
    return this.spec.version;
  }

  /**
   * Workers exist or may start: without, any job is refused with a 503. A model scaled to no
   * worker whose maxWorkers is above its minWorkers (minWorkers 0) starts one for the job, which
   * waits for it (WorkerPool.arrived); with maxWorkers 0 it refuses, as TorchServe's.
   */
  private get hasWorkers(): boolean {
    const { minWorkers, maxWorkers } = this.settings;
    return maxWorkers > 0 && (this.pool.size > 0 || this.unloadedFlag || maxWorkers > minWorkers);
  }

  /** Scaled to no worker with minWorkers 0: its next job starts one (WorkerPool.arrived), and waits for it. */
  private get startsOnRequest(): boolean {
    const { minWorkers, maxWorkers } = this.settings;
    return this.pool.size === 0 && maxWorkers > minWorkers;
  }

  /**
   * At least its minimum of healthy workers (loading ones count): /ping's test, as TorchServe's.
   * An unloaded model is ready: its next request loads it.
   */
  get ready(): boolean {
    return this.unloadedFlag || this.pool.healthyCount() >= this.settings.minWorkers;
  }

  /**
   * Able to answer: a worker has the model loaded, or its next request starts one (it is unloaded,
   * or scaled to no worker with minWorkers 0). The readiness of KServe and the Open Inference
   * Protocol, where /ping counts loading workers too.
   */
  get serving(): boolean {
    return this.unloadedFlag || this.startsOnRequest || this.pool.loadedCount() > 0;
  }

  /** Has its workers (or is getting them); false once unloaded to make room. */
  get loaded(): boolean {
    return !this.unloadedFlag || this.loadAsked;
  }

  /** Unloaded, and no load asked for yet: a job asks for one. */
  private get needsLoad(): boolean {
    return this.unloadedFlag && !this.loadAsked;
  }

  /** Its requests keep sequences (`sequenceBatching`), whose state lives in the worker serving each. */
  get stateful(): boolean {
    return this.settings.sequence !== undefined;
  }

  /**
   * It may be unloaded: no job queued or running, no load or unload under way, and not stateful
   * (a sequence's state lives in the worker that serves it, and would be lost).
   */
  get unloadable(): boolean {
    return this.settings.sequence === undefined && this.outstanding.size === 0 && this.queue.size === 0 && this.changes === 0;
  }

  /**
   * Retires the workers (each after its batch) and keeps the model registered; its next job loads
   * it again (load). Only an idle model is unloaded, so nothing it held is lost; a job that comes
   * meanwhile waits for the unload, then for the load.
   */
  unload(): Promise<void> {
    this.unloadedSettings = { ...this.settings, minWorkers: 0, maxWorkers: 0 };
    this.unloadedFlag = true;
    return this.inTurn(async () => {
      await this.pool.scale(0, 0);
    });
  }

  /**
   * Starts the workers of an unloaded model again: its minimum, and at least one. It counts as
   * unloaded until its turn comes (an unload may still be retiring its workers): jobs that come
   * meanwhile wait in the queue for the load, where a pool of no worker would refuse them.
   */
  load(): Promise<ScaleResult> {
    this.loadAsked = true;
    return this.inTurn(() => {
      this.unloadedFlag = false;
      this.loadAsked = false;
      return this.pool.scale(Math.max(1, this.settings.minWorkers), Math.max(1, this.settings.maxWorkers));
    });
  }

  /** Runs `change` once the previous unload or load is over. */
  private inTurn<T>(change: () => Promise<T>): Promise<T> {
    this.changes++;
    const next = this.transition.then(change).finally(() => {
      this.changes--;
    });
    this.transition = next.catch(() => {});
    return next;
  }

  /**
   * Whether a job enqueued now would be refused: no worker, no room in the queue or, with
   * useJobTicket, no worker free at once. True: the caller answers 503.
   */
  get refusing(): boolean {
    return !this.hasWorkers || this.queue.full || this.noTicket;
  }

  /**
   * useJobTicket's refusal: no worker free at once. An unloaded model has no idle worker, but its
   * job ticket is the load it asks for; one scaled to no worker starts one for the job, as any
   * model does (else it refused its first request, and every one after while the cores bound held
   * the scale-up its refusals asked for).
   */
  private get noTicket(): boolean {
    return this.settings.useJobTicket && !this.unloadedFlag && !this.startsOnRequest && !this.queue.workerIdle;
  }

  /** False when the model refuses the job (see refusing): the caller answers 503. */
  enqueue(job: Job): boolean {
    const { clientTimeoutInMills } = this.settings;
    if (this.refusing) return false;
    if (this.needsLoad) this.demandLoad();
    else if (!this.unloadedFlag && this.pool.size === 0) this.demandStart();
    if (!this.queue.enqueue(job)) return false;
    this.lastUsed = Date.now();
    this.onUse?.(this);
    // The front end's warm-up (quiet) is no load for the workers to follow.
    if (!job.quiet) this.pool.arrived();
    const expiry = clientTimeoutInMills > 0 ? this.expireIfQueued(job, clientTimeoutInMills) : undefined;
    this.track(job, () => clearTimeout(expiry));
    return true;
  }

  /**
   * An unloaded model's job asks for its load, which the job then waits for in the queue (bounded
   * by clientTimeoutInMills, as any queued job); throws the 507 of a model that cannot be loaded.
   */
  private demandLoad(): void {
    const cannotLoad = this.loadOnDemand?.(this);
    if (cannotLoad) throw cannotLoad;
  }

  /** A job for a model with no worker (minWorkers 0): throws the 507 of a first worker that could never fit. */
  private demandStart(): void {
    const cannotStart = this.cannotStart?.(this);
    if (cannotStart) throw cannotStart;
  }

  /**
   * No worker could load the model (WorkerPool's onStartFailed): the jobs waiting for one are
   * answered now, not at their deadline with the queue's 503. A start they asked for (the first
   * request of a model with no worker, the load of an unloaded one) failed as a synchronous scale
   * does: 500 with why. A restart after a crash left the model with no worker to serve: TorchServe's
   * 503 (TORCHSERVE_COMPAT.md §3.6); why is in the model log, and the restarts go on.
   */
  private failQueued(cause: unknown, restart: boolean): void {
    const why = cause instanceof Error ? cause.message : String(cause);
    const error = restart
      ? tsError('TSS_ERR_WORKER_NONE_AVAILABLE', this.name)
      : new TsError('TSS_ERR_WORKER_START_FAILED', `${tsError('TSS_ERR_WORKER_START_FAILED', this.name, this.version).message}: ${why}`);
    for (const job of this.queue.drain()) job.fail(error);
    // A worker started for a request (minWorkers 0) is not restarted: the next request tries anew.
    if (this.settings.minWorkers === 0 && !this.stoppedFlag) void this.pool.scale(0, 0);
  }

  /**
   * A client's prediction was refused: its workers may grow when it was for load, a full queue or
   * (useJobTicket) no worker free. Not a stateful model's: its refusals are its sequences' (unknown,
   * closed, expired, or their own queue full), which a new worker would not take, and its workers
   * are never stopped: such refusals grew it to maxWorkers for good.
   */
  refused(): void {
    if (this.refusedForLoad) this.pool.refused();
  }

  private get refusedForLoad(): boolean {
    return this.hasWorkers && this.settings.sequence === undefined && (this.queue.full || this.noTicket);
  }

  /** Counts `job` as outstanding until it is answered: a stop drains it. */
  private track(job: Job, onDone?: () => void): void {
    this.outstanding.add(job);
    void job.done.then(() => {
      this.outstanding.delete(job);
      onDone?.();
      if (this.outstanding.size === 0) this.onIdle?.();
    });
  }

  /**
   * The handler's own description, for describe's `customized=true`: a request with the header
   * `describe: True`, run in a batch of its own; its answer is parsed as a JSON object (anything
   * else is `{}`), and `null` (BaseHandler's default) means none.
   */
  async customizedMetadata(): Promise<Record<string, unknown> | undefined> {
    const answer = new Promise<JobResponse>((respond, fail) => {
      const job = new Job({ id: randomUUID(), headers: { describe: 'True' }, params: [] }, { intermediate() {}, respond, fail });
      const cannotLoad = this.needsLoad ? this.loadOnDemand?.(this) : undefined;
      if (cannotLoad) {
        fail(cannotLoad);
        return;
      }
      if (!this.hasWorkers || !this.queue.enqueue(job)) {
        fail(tsError('TSS_ERR_WORKER_NONE_FOR_DESCRIBE', this.name));
        return;
      }
      this.pool.arrived();
      this.track(job);
    });
    return metadataObject(Buffer.from((await answer).body).toString('utf8'));
  }

  /**
   * A job whose client went away while it waited leaves the queue, unrun and unanswered (one a
   * worker holds runs): the front end's warm-up's, whose budget ran out. Left, it ran after the
   * warm-up had ended, and the first clients' requests waited behind it.
   */
  withdraw(job: Job): void {
    if (!job.settled && job.dequeuedAt === undefined && this.queue.remove(job)) job.drop();
  }

  /**
   * TorchServe drops a request that waited past clientTimeoutInMills without a word to its
   * client; here it is answered at its deadline, and never run. One a worker already holds runs
   * and is answered: its cost is paid, and the client may still be there.
   */
  private expireIfQueued(job: Job, timeoutMs: number): NodeJS.Timeout {
    job.deadline = performance.now() + timeoutMs;
    const timer = setTimeout(() => {
      if (job.settled) return;
      // Held by a worker: it runs, unless the worker dies first and it comes back to the queue.
      if (job.dequeuedAt !== undefined) {
        timer.refresh();
        return;
      }
      this.queue.remove(job);
      job.fail(tsError('TSS_ERR_CLIENT_TIMEOUT', String(timeoutMs), this.name));
    }, timeoutMs);
    timer.unref();
    return timer;
  }

  /**
   * Resolves once every job enqueued so far has been answered, or after `timeoutMs`, whichever
   * comes first. The workers keep serving meanwhile.
   */
  private async drain(timeoutMs: number): Promise<void> {
    const answered = Promise.all([...this.outstanding].map((j) => j.done));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    try {
      await Promise.race([answered, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Unregistered, or the server is stopping: the model takes no more workers. Set when its stop
   * begins, before the drain, so that no scale in flight starts one it would have to kill.
   */
  get stopped(): boolean {
    return this.stoppedFlag;
  }

  /**
   * Scales the workers (WorkerPool.scale). A stopped model refuses, and a scale the stop
   * overtook says so, whatever its workers did: either way the model is not found any more (404).
   */
  async scale(min: number, max: number): Promise<ScaleResult> {
    if (this.stoppedFlag) return this.notFound();
    this.settings.minWorkers = min;
    this.settings.maxWorkers = max;
    // An operator's scale of an unloaded model loads it (the model service made room first): as
    // load's, once an unload under way is over, jobs meanwhile waiting for it.
    if (this.changes > 0) {
      if (this.unloadedFlag) this.loadAsked = true;
      await this.transition;
    }
    this.unloadedFlag = false;
    this.loadAsked = false;
    const result = await this.pool.scale(min, max);
    return this.stoppedFlag ? this.notFound() : result;
  }

  private notFound(): ScaleResult {
    return { ok: false, error: tsError('TSS_ERR_MODEL_NOT_FOUND', this.name) };
  }

  /**
   * Graceful stop, for unregister and server shutdown: answers what was enqueued (within
   * `drainTimeoutMs`), then closes. Whatever the drain could not finish still gets an answer:
   * a batch in flight "Worker died.", a queued job a 503.
   */
  async stop(drainTimeoutMs: number): Promise<void> {
    this.stoppedFlag = true;
    // Unloaded, it loads no more (a stopped model takes no workers): what waits for its load would
    // wait out its deadline, and the drain with it; answered now.
    if (this.unloadedFlag) for (const job of this.queue.drain()) job.fail(tsError('TSS_ERR_MODEL_STOPPED', this.name));
    await this.drain(drainTimeoutMs);
    await this.close(tsError('TSS_ERR_MODEL_STOPPED', this.name));
  }

  /** Retires the workers, fails what is still queued with `error` and removes the extracted files. */
  async close(error?: TsError): Promise<void> {
    this.stoppedFlag = true;
    this.settings.minWorkers = 0;
    this.settings.maxWorkers = 0;
    await this.pool.close(error);
    // Off the event loop: removing models' files held the front end's up to a second in a churn test.
    if (this.spec.extracted) await rm(this.spec.dir, { recursive: true, force: true });
    if (this.spec.downloadedFile) await rm(this.spec.downloadedFile, { force: true });
  }

  /** One element of the describe answer, fields in TorchServe's order. */
  describe(): ModelDescription {
    const s = this.settings;
    return {
      modelName: this.name,
      modelVersion: this.version,
      modelUrl: this.spec.url,
      runtime: this.spec.runtime,
      ...workerAndBatchSettings(s),
      maxRetryTimeoutInSec: s.maxRetryTimeoutInSec,
      clientTimeoutInMills: s.clientTimeoutInMills,
      parallelType: '',
      parallelLevel: 0,
      deviceType: 'cpu',
      continuousBatching: false,
      useJobTicket: s.useJobTicket,
      useVenv: false,
      stateful: s.sequence !== undefined,
      sequenceMaxIdleMSec: s.sequence?.sequenceMaxIdleMSec ?? 0,
      sequenceTimeoutMSec: s.sequence?.sequenceTimeoutMSec ?? 0,
      maxNumSequence: s.sequence?.maxNumSequence ?? 0,
      maxSequenceJobQueueSize: s.sequence?.maxSequenceJobQueueSize ?? 0,
      loadedAtStartup: this.spec.loadedAtStartup,
      // tsserve's own: can it answer (a worker has it loaded, or its next request loads it)?
      serving: this.serving,
      loaded: this.loaded,
      lastUsed: this.lastUsed > 0 ? new Date(this.lastUsed).toISOString() : null,
      autoscale: this.pool.scaling,
      batching: this.pool.batching,
      workers: this.pool.workers.map((w) => ({
        id: w.id,
        startTime: formatStartTime(w.startTime),
        status: describeStatus(w.state),
        memoryUsage: w.memoryUsage,
        pid: w.pid,
        gpu: false,
        gpuUsage: 'N/A',
        sharedHost: w.shared,
      })),
      jobQueueStatus: { remainingCapacity: this.queue.remainingCapacity, pendingRequests: this.queue.size },
    };
  }
}

function metadataObject(text: string): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return {};
  }
  if (parsed === null) return undefined;
  return isRecord(parsed) ? parsed : {};
}

/** `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` in local time with a literal Z, as TorchServe writes it. */
function formatStartTime(d: Date): string {
  return formatLocalTime(d, 'yyyy-MM-ddTHH:mm:ss.SSSZ');
}

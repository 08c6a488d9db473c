/**
 * @module workers/worker-pool
 * The workers of one model version. Each slot runs one worker at a time: it takes a batch from the
 * model's queue, runs it, and repeats. A worker that dies is replaced after TorchServe's backoff
 * while the recovery window is open; a worker that is scaled down first finishes its batch. Between
 * minWorkers and maxWorkers its scaler (workers/scaler.ts) adds and stops workers with the load.
 */
import { tsError, type TsError } from '../errors.js';
import type { WorkerProcess } from './worker-process.js';
import { allQuiet, type Job } from '../batching/job.js';
import type { BatchQueue } from '../batching/job-queue.js';
import { AdaptiveBatching, type AdaptiveState, type PoolLoad } from '../batching/adaptive.js';
import type { BatchDelay } from '../batching/waiting-workers.js';
import type { AdaptiveLimits } from '../config/model-config.js';
import { backoffSeconds } from './worker-state.js';
import { HOST, type Machine } from './machine.js';
import { Scaler, type ScaledSettings, type ScaleEvent, type ScalerState } from './scaler.js';

export interface PoolSettings extends ScaledSettings {
  readonly batchSize: number;
  readonly maxBatchDelay: number;
  /** With batchSize 1: how many queued requests a worker may still take at once, without waiting. */
  readonly takeQueued: number;
  readonly maxRetryTimeoutInSec: number;
  readonly adaptiveThreads: boolean;
  /** Batch size and wait chosen from measured batch times (batching/adaptive.ts); undefined: the two above. */
  readonly adaptive?: AdaptiveLimits | undefined;
}

/** How a pool batches, for describe: chosen from measured times, or TorchServe's fixed keys. */
export type BatchingState = AdaptiveState | { readonly policy: 'fixed'; readonly batchSize: number; readonly maxBatchDelay: number };

/** The most requests one batch of the model may hold: its batch size, or with 1, takeQueued. */
export function largestBatch(settings: Pick<PoolSettings, 'batchSize' | 'takeQueued'>): number {
  return settings.batchSize > 1 ? settings.batchSize : settings.takeQueued;
}

/** How long a batch waits to fill: max_batch_delay when batching; with batchSize 1, not at all. */
export function batchWaitMs(settings: Pick<PoolSettings, 'batchSize' | 'maxBatchDelay'>): number {
  return settings.batchSize > 1 ? settings.maxBatchDelay : 0;
}

export interface PoolDeps {
  /** A new, not yet started worker with a fresh id. */
  readonly spawn: () => WorkerProcess;
  /** A replacement worker has loaded after a failure. */
  readonly onRestart: (worker: WorkerProcess) => void;
  /** A batch formed and leaves for a worker (its jobs' dequeuedAt set). */
  readonly onBatch: (jobs: readonly Job[]) => void;
  readonly log: (message: string) => void;
  /** The scaler added or stopped workers, or a bound held it (workers/scaler.ts). */
  readonly onScale?: (event: ScaleEvent) => void;
  /** Cores, memory and every pool's workers; the host's (machine.ts's HOST) unless a test gives its own. */
  readonly machine?: Machine;
  /** The scaler's clock, in milliseconds; performance.now unless a test gives its own. */
  readonly now?: () => number;
  /**
   * A worker's handler failed to load the model while none of the pool's workers has it loaded:
   * the jobs waiting in the queue would wait for nothing until their deadline; answered now.
   * `restart`: the worker replaced one that died, and was no start of the pool's (a scale's).
   */
  readonly onStartFailed?: (cause: unknown, restart: boolean) => void;
  /** How many of `count` more workers the scaler may start now (Scaler's admit); all where unset. */
  readonly admit?: (count: number) => number;
  /** Its workers live in shared hosts (workers/shared-hosts.ts), not in processes of their own. */
  readonly sharesHost?: boolean;
}

interface Slot {
  worker: WorkerProcess;
  removed: boolean;
  attempt: number;
  firstFailureAt: number | undefined;
  restartTimer: NodeJS.Timeout | undefined;
  stopServing: AbortController;
  serving: Promise<void>;
  /** The current worker's start, until it has loaded or failed. */
  loading: Promise<void> | undefined;
  /** A full batch's round trip, from the last batch sent while the worker had nothing to do. */
  fullBatchMs: number | undefined;
  /**
   * The worker's own time on a full batch: see workEstimate. Not adaptive batching's fit
   * (batching/adaptive.ts), which is the pool's, counts the front end's time too and follows the
   * least times: the batches a worker holds ahead must count a slow batch at once.
   */
  fullBatchWorkMs: number | undefined;
}

/**
 * Full batches a busy worker may hold besides the one it runs (they wait in its pipe, where no other
 * worker can take them): as many as fit in AHEAD_BUDGET_MS of its own time on a batch, at least one
 * and at most MAX_BATCHES_AHEAD. mnist's batches of 8 (2-3 ms) get sixteen; one of 100 ms batches
 * gets one, so a request is never held behind more than one batch of another worker's while a
 * worker idles. The worker's time, not the round trip: under load the round trip grows with the
 * front end's busy event loop, and a count from it fell to one batch ahead just when the worker
 * needed more to keep busy (the cold start's refusals: docs/performance.md, "Batches ahead in the
 * worker's time"). The budget is what a worker must have in hand to outlast one turn of that busy
 * loop past capacity: with 50 ms and eight it ran dry and idled ("Batches ahead outside the queue").
 */
const AHEAD_BUDGET_MS = 100;
const MAX_BATCHES_AHEAD = 16;
/** How much of a longer batch time is still remembered one batch later: see workEstimate. */
const WORK_MEMORY = 0.9;

/**
 * A full batch's time in the worker, from a batch that took `workMs` for `jobs` of `limit`: a longer
 * time counts at once, shorter ones lower it a tenth a batch, so a model whose batches vary (a
 * quick one after a slow one) does not take many ahead on one quick batch.
 */
function workEstimate(previous: number | undefined, workMs: number, jobs: number, limit: number): number {
  return Math.max((workMs * limit) / jobs, (previous ?? 0) * WORK_MEMORY);
}

function batchesAhead(slot: Slot): number {
  if (slot.fullBatchWorkMs === undefined) return 0;
  return Math.min(MAX_BATCHES_AHEAD, Math.max(1, Math.floor(AHEAD_BUDGET_MS / slot.fullBatchWorkMs)));
}

/** A pool's adaptive batching, and the delay its waiting workers ask it for. */
interface PoolAdaptive {
  readonly batching: AdaptiveBatching;
  readonly delay: BatchDelay;
}

export type ScaleResult = { ok: true; running: number } | { ok: false; error: TsError };

export class WorkerPool {
  private slots: Slot[] = [];
  /** Closed for good: no worker starts again, whatever a scale in flight was about to do. */
  private closed = false;
  private readonly queue: BatchQueue;
  private readonly settings: () => PoolSettings;
  private readonly deps: PoolDeps;
  private readonly machine: Machine;
  private readonly scaler: Scaler;
  /** Made at the first batch of a model that batches adaptively. */
  private adaptive: PoolAdaptive | undefined;
  /**
   * Jobs sent to workers and not yet answered: with the queue's (whose count has the jobs taken
   * ahead too: a backlog either way), the load adaptive batching sees.
   */
  private inBatches = 0;

  constructor(queue: BatchQueue, settings: () => PoolSettings, deps: PoolDeps) {
    this.queue = queue;
    this.settings = settings;
    this.deps = deps;
    this.machine = deps.machine ?? HOST;
    this.machine.enlist(this);
    this.scaler = new Scaler(this.scaledPool(), settings, {
      machine: this.machine,
      now: deps.now ?? (() => performance.now()),
      onScale: deps.onScale ?? (() => {}),
      admit: deps.admit,
    });
  }

  /** The pool as its scaler sees it. */
  private scaledPool(): ConstructorParameters<typeof Scaler>[0] {
    const pool = this;
    return {
      get size() {
        return pool.slots.length;
      },
      get starting() {
        return pool.slots.some((s) => s.loading !== undefined);
      },
      get waiting() {
        return pool.queue.load;
      },
      get busy() {
        return pool.busyCount();
      },
      get keepsWorkers() {
        return pool.queue.keepsWorkers;
      },
      loadedPids: () => this.slots.flatMap((s) => (s.worker.state === 'MODEL_LOADED' && s.worker.pid > 0 ? [s.worker.pid] : [])),
      add: (count) => {
        if (this.closed) return;
        for (let i = 0; i < count; i++) this.addSlot();
      },
      retireIdle: (count) => this.retireIdle(count),
    };
  }

  private busyCount(): number {
    let n = 0;
    for (const s of this.slots) if (s.worker.busy) n++;
    return n;
  }

  /** A job was enqueued: a model scaled to no worker starts one (see Scaler.arrived). */
  arrived(): void {
    this.adaptive?.batching.arrived();
    this.scaler.arrived();
  }

  /** A job was refused (the queue was full): pressure to grow (see Scaler.refused). */
  refused(): void {
    this.scaler.refused();
  }

  /** How the pool batches now, for describe. */
  get batching(): BatchingState {
    const settings = this.settings();
    const adaptive = this.adaptiveBatching(settings);
    if (adaptive) return adaptive.batching.state();
    return { policy: 'fixed', batchSize: largestBatch(settings), maxBatchDelay: batchWaitMs(settings) };
  }

  /** The model's adaptive batching, when it batches so. */
  private adaptiveBatching(settings: PoolSettings): PoolAdaptive | undefined {
    if (!settings.adaptive) return undefined;
    if (!this.adaptive) {
      const batching = new AdaptiveBatching(settings.adaptive, this.deps.now);
      const load = (): PoolLoad => ({ outstanding: this.queue.size + this.inBatches, workers: this.loadedCount() });
      this.adaptive = { batching, delay: (batch, idleBehind) => batching.waitMs(batch, idleBehind, load()) };
      this.noteBatchDimension();
    }
    return this.adaptive;
  }

  /** Tells adaptive batching the least batch dimension the loaded workers said (worker-process's batchLimit). */
  private noteBatchDimension(): void {
    if (!this.adaptive) return;
    const limits = this.slots.flatMap((s) => (s.worker.state === 'MODEL_LOADED' && s.worker.batchLimit !== undefined ? [s.worker.batchLimit] : []));
    this.adaptive.batching.batchDimension = limits.length > 0 ? Math.min(...limits) : undefined;
  }

  /** The scaler's policy and state, for describe. */
  get scaling(): ScalerState {
    return this.scaler.state();
  }

  /** Its workers live in shared hosts (PoolDeps.sharesHost). */
  get sharesHost(): boolean {
    return this.deps.sharesHost ?? false;
  }

  get workers(): WorkerProcess[] {
    return this.slots.map((s) => s.worker);
  }

  get size(): number {
    return this.slots.length;
  }

  /** Workers that serve, are loading, or failed but are still inside the recovery window. */
  healthyCount(now = Date.now()): number {
    const windowMs = this.settings().maxRetryTimeoutInSec * 1000;
    return this.slots.filter((s) => s.firstFailureAt === undefined || now - s.firstFailureAt < windowMs).length;
  }

  /** Workers with their model loaded, answering jobs now. */
  loadedCount(): number {
    return this.slots.filter((s) => s.worker.state === 'MODEL_LOADED').length;
  }

  /**
   * Starts workers up to `min`, or retires workers down to `max` (leastNeeded). Resolves once
   * every worker still loading, new or not, has loaded (ok) or one of them failed to (its error).
   * A worker retired while it loads (another scale, or close) is no failure: it was not wanted.
   * A closed pool starts nothing, also when it closed while this scale waited for a retirement.
   */
  async scale(min: number, max: number): Promise<ScaleResult> {
    if (this.slots.length > max) await Promise.all(this.remove(leastNeeded(this.slots, this.slots.length - max)).map((s) => this.retire(s, true)));
    if (this.closed) return { ok: true, running: 0 };
    while (this.slots.length < min) this.addSlot();
    this.scaler.reset();
    const loads = this.slots.flatMap((s) => (s.loading ? [failureUnlessRetired(s, s.loading)] : []));
    const outcomes = await Promise.allSettled(loads);
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) return { ok: false, error: failed.reason as TsError };
    return { ok: true, running: this.loadedCount() };
  }

  private addSlot(): void {
    const slot: Slot = {
      worker: this.deps.spawn(),
      removed: false,
      attempt: 0,
      firstFailureAt: undefined,
      restartTimer: undefined,
      stopServing: new AbortController(),
      serving: Promise.resolve(),
      loading: undefined,
      fullBatchMs: undefined,
      fullBatchWorkMs: undefined,
    };
    this.slots.push(slot);
    void this.launch(slot).catch(() => {
      /* reported through slot.loading and the worker's exit */
    });
  }

  /** Starts `slot.worker` and, once it has loaded, serves the queue with it. */
  private launch(slot: Slot): Promise<void> {
    const worker = slot.worker;
    const restart = slot.firstFailureAt !== undefined;
    slot.stopServing = new AbortController();
    slot.serving = Promise.resolve();
    worker.on('exit', () => this.onExit(slot, worker));
    const loading = worker.start().then(() => {
      slot.attempt = 0;
      slot.firstFailureAt = undefined;
      this.noteBatchDimension();
      slot.serving = this.serve(slot, worker);
    });
    slot.loading = loading;
    const done = (): void => {
      if (slot.loading === loading) slot.loading = undefined;
    };
    loading.then(done, (cause: unknown) => {
      done();
      // ERROR: the worker said its handler failed to load, and a process that could not be spawned
      // (EACCES, EMFILE) fails alike: a restart would likely repeat either, and the queue would wait
      // for nothing until its deadline (review-13 F5: 30 s). A worker that died as it started (a
      // crash, a kill) may well load on its restart, and is waited for.
      const repeats = worker.state === 'ERROR' || worker.startFailure !== undefined;
      if (!slot.removed && repeats && this.loadedCount() === 0) void this.startFailed(worker, cause, restart);
    });
    return loading;
  }

  /** Tells onStartFailed once the failed worker's process is gone: the answers leave none behind. */
  private async startFailed(worker: WorkerProcess, cause: unknown, restart: boolean): Promise<void> {
    if (!worker.exited) await new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.deps.onStartFailed?.(cause, restart);
  }

  /**
   * Feeds `worker` from the queue until it stops: one batch at a time, plus, while that one runs,
   * more when full ones wait (see nextBatchEarly and batchesAhead).
   */
  private async serve(slot: Slot, worker: WorkerProcess): Promise<void> {
    const signal = slot.stopServing.signal;
    const running: Promise<void>[] = [];
    while (!signal.aborted && worker.state === 'MODEL_LOADED') {
      const settings = this.settings();
      const adaptive = this.adaptiveBatching(settings);
      const limit = adaptive ? adaptive.batching.largest() : largestBatch(settings);
      const delay = adaptive ? adaptive.delay : batchWaitMs(settings);
      const taken = running.length > 0 ? this.nextBatchEarly(limit, slot, running.length) : await this.queue.poll(limit, delay, signal, slot);
      // A job answered while its batch was forming (its client timed out) is not run.
      const jobs = taken.filter((j) => !j.settled);
      if (jobs.length === 0) {
        await this.oldestEndsOrJobArrives(running);
        continue;
      }
      const now = performance.now();
      for (const job of jobs) job.dequeuedAt = now;
      if (!allQuiet(jobs)) this.deps.onBatch(jobs);
      if (signal.aborted || worker.state !== 'MODEL_LOADED') {
        this.queue.requeue(jobs);
        break;
      }
      const idle = running.length === 0;
      const sentAt = performance.now();
      this.inBatches += jobs.length;
      const sent = worker.runBatch(jobs, this.mayRunWide(slot)).then(({ unstarted, workMs, frontEndMs }) => {
        this.inBatches -= jobs.length;
        if (idle) slot.fullBatchMs = ((performance.now() - sentAt) * limit) / jobs.length;
        if (workMs !== undefined) slot.fullBatchWorkMs = workEstimate(slot.fullBatchWorkMs, workMs, jobs.length, limit);
        if (workMs !== undefined && unstarted.length === 0) adaptive?.batching.ran(jobs.length, workMs + (frontEndMs ?? 0));
        this.queue.requeue(unstarted);
      });
      running.push(sent);
      this.scaler.busy(this.busyCount());
      if (running.length > batchesAhead(slot)) await running.shift();
    }
    await Promise.all(running);
  }

  /** Waits for the oldest batch in `running` to end (then drops it) or, if sooner, a new job. */
  private async oldestEndsOrJobArrives(running: Array<Promise<void>>): Promise<void> {
    const oldest = running[0];
    if (!oldest) return;
    const arrival = this.queue.nextEnqueue();
    const ended = arrival ? await Promise.race([oldest.then(() => true), arrival.then(() => false)]) : await oldest.then(() => true);
    if (ended) running.shift();
  }

  /**
   * A worker gets the next batch while it still runs one, if a full one waits and no other worker
   * idles: otherwise it would idle while its answers travel out and the next batch travels in
   * (about 5 ms a batch, 3-4% of ResNet-18's throughput). Past capacity that gap grows with the
   * front end's event loop, which then also reads every refused request: with no batch ahead,
   * mnist's two workers idled at 0.1-0.2 of a core each at 3x its capacity (docs/performance.md).
   */
  private nextBatchEarly(batchSize: number, slot: Slot, held: number): Job[] {
    // Not before a batch's time is known, nor a job that would wait there past its queue deadline
    // (it would have to run; in the queue it is answered at the deadline and never run).
    if (slot.fullBatchMs === undefined) return [];
    return this.queue.takeFullBatch(batchSize, 2 * slot.fullBatchMs * (held + 1), this.leftForOthers(slot));
  }

  /**
   * Full batches a busy worker leaves queued before it takes one ahead. None when its batches are
   * quick: a job held ahead waits at most AHEAD_BUDGET_MS. One for each other worker when they are
   * slow: a job held ahead waits out the whole batch before it, while another worker may free
   * first (two workers of 3 s batches answered four requests at 3, 3, 6 and 9 s, not 6 and 6).
   */
  private leftForOthers(slot: Slot): number {
    if ((slot.fullBatchWorkMs ?? 0) <= AHEAD_BUDGET_MS) return 0;
    return this.slots.filter((other) => other !== slot && other.worker.state === 'MODEL_LOADED').length;
  }

  /**
   * adaptiveThreads: a batch may use every core while the model's other workers idle and nothing
   * else waits. Under load each worker keeps to its share, so that together they never ask for
   * more threads than there are cores.
   */
  private mayRunWide(slot: Slot): boolean {
    return this.settings().adaptiveThreads && this.queue.size === 0 && this.slots.every((s) => s === slot || !s.worker.busy);
  }

  private onExit(slot: Slot, worker: WorkerProcess): void {
    slot.stopServing.abort();
    if (slot.removed || slot.worker !== worker) return;
    // A stateful model's sequences' state died with the process: they start over, on any worker.
    this.queue.release(slot);
    const now = Date.now();
    slot.firstFailureAt ??= now;
    if (now - slot.firstFailureAt >= this.settings().maxRetryTimeoutInSec * 1000) {
      this.deps.log(`Worker ${worker.id} stays stopped: the recovery window is over`);
      return;
    }
    const delay = backoffSeconds(slot.attempt++);
    const why = worker.startFailure;
    this.deps.log(`Worker ${worker.id} ${why ? `could not start its process (${why})` : 'stopped'}; restarting in ${delay} s`);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (slot.removed) return;
      slot.worker = this.deps.spawn();
      this.launch(slot).then(
        () => this.deps.onRestart(slot.worker),
        () => {
          /* its exit schedules the next try */
        },
      );
    }, delay * 1000);
    slot.restartTimer.unref();
  }

  /**
   * The scaler's scale-down: stops up to `count` workers that run no batch, those that do not
   * serve (dead, or past their recovery) first, then from the newest; a worker still starting is
   * kept. Each finishes what it was given meanwhile (retire). How many it stops.
   */
  private retireIdle(count: number): number {
    const idle = this.slots.filter((s) => !s.worker.busy && s.loading === undefined);
    const chosen = this.remove(leastNeeded(idle, count));
    for (const slot of chosen) this.retire(slot, true).catch(() => {});
    return chosen.length;
  }

  /** Takes `chosen` out of the pool; answers them. */
  private remove(chosen: Slot[]): Slot[] {
    this.slots = this.slots.filter((s) => !chosen.includes(s));
    return chosen;
  }

  /**
   * Stops taking jobs and ends the process: on scale-down after the batch in flight has finished,
   * on close at once (the model's drain already had its time; the batch gets "Worker died.").
   */
  private async retire(slot: Slot, finishBatch: boolean): Promise<void> {
    slot.removed = true;
    if (slot.restartTimer) clearTimeout(slot.restartTimer);
    slot.stopServing.abort();
    if (finishBatch) await slot.serving;
    const worker = slot.worker;
    worker.moveTo('SCALED_DOWN');
    this.queue.release(slot);
    if (worker.pid < 0 || worker.exited) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.kill();
    await exited;
  }

  /** Ends every worker now, and for good; what is still queued gets `error`. */
  async close(error: TsError = tsError('TSS_ERR_WORKER_DIED')): Promise<void> {
    this.closed = true;
    this.scaler.stop();
    this.machine.dismiss(this);
    await Promise.all(this.slots.splice(0).map((s) => this.retire(s, false)));
    for (const job of this.queue.drain()) job.fail(error);
  }
}

/**
 * The `count` of `slots` a scale-down stops: those that do not serve (dead, or past their
 * recovery, or still loading) first, for stopping one that serves would leave a dead one in its
 * place; then from the newest, as TorchServe removes from the end of its list.
 */
function leastNeeded(slots: readonly Slot[], count: number): Slot[] {
  const serving = (s: Slot): number => (s.worker.state === 'MODEL_LOADED' ? 1 : 0);
  return [...slots]
    .reverse()
    .sort((a, b) => serving(a) - serving(b))
    .slice(0, count);
}

/** `loading`, except that its failure is none once `slot` was retired: the worker was not wanted. */
function failureUnlessRetired(slot: Slot, loading: Promise<void>): Promise<void> {
  return loading.catch((err: unknown) => {
    if (!slot.removed) throw err;
  });
}

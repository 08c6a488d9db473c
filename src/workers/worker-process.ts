/**
 * @module workers/worker-process
 * The front end's handle on one worker: one model's handler in a worker process (its host,
 * worker-host.ts). Workers are processes, not threads: onnxruntime and sharp are native code, and
 * a segfault, an abort or an out-of-memory kill in a thread would take the whole server with it.
 * A process dies alone; this handle fails its in-flight batch with "Worker died." and reports the
 * exit so the pool can start a replacement. A worker has a process of its own, or, for a model
 * that shares (sharedWorker), lives in a shared host beside other models' workers: then stopping
 * it unloads its model there, and the host's death is the exit of every worker in it.
 */
import { EventEmitter } from 'node:events';
import { cpus } from 'node:os';
import { errorFromWire, tsError, type TsError } from '../errors.js';
import { timerMs } from '../timer-ms.js';
import { allQuiet, type Job } from '../batching/job.js';
import type { BatchTrace } from '../metrics/tracing.js';
import { canMove, isStaleMove, WORKER_STATE_WARNING, type WorkerState } from './worker-state.js';
import { checkedAnswer } from '../protocol/answer-head.js';
import { AnswerBudget, answerBytes, messageBound, responseTooLarge } from '../protocol/answer-size.js';
import { WorkerHost, type Tenant } from './worker-host.js';
import type { FromWorker, LoadMessage, PredictMessage, WireMetric, WireResponse, WireStage } from '../protocol/messages.js';

export { MALLOC_MMAP_THRESHOLD, mallocReturningMemory, workerEnvironment } from './worker-host.js';

/** Where shared workers find their host (shared-hosts.ts). */
export interface HostSource {
  /** A running shared host that holds no worker of `model` (`name_version`) and has room for one. */
  hostFor(model: string): WorkerHost;
}

/**
 * How long a shared worker's unload may take before the worker counts as gone anyway: its
 * batches sent so far run first, each bounded by the response timeout, which ends the host.
 */
const UNLOAD_WAIT_MS = 10_000;

export interface WorkerOptions {
  readonly id: string;
  /** The load message, its key this worker's id. */
  readonly load: LoadMessage;
  /** The shared hosts it lives in; undefined: a process of its own. */
  readonly hosts?: HostSource;
  readonly intraOpThreads: number;
  /** A lone batch's threads (adaptiveThreads); undefined: every batch runs with intraOpThreads. */
  readonly wideIntraOpThreads: number | undefined;
  readonly startupTimeoutMs: number;
  readonly responseTimeoutMs: number;
  /** Niceness added to the process: under contention the front end's reads and refusals come first. */
  readonly nice: number;
  /** Runs under Node's permission model (worker_permission, workers/permissions.ts). */
  readonly permission: boolean;
  /** The environment the process starts with (workerEnvironment). */
  readonly env: NodeJS.ProcessEnv;
  /** Each line the handler prints, with its stream (a shared host's are the host's, not a worker's). */
  readonly onOutput: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Metrics the handler emitted while answering the requests `requestIds`. */
  readonly onMetrics: (metrics: WireMetric[], requestIds: string[]) => void;
  /** The server's own milliseconds on a batch, sending it and handing out its answers (WorkerThreadTime). */
  readonly onBatchHandled: (ms: number) => void;
  /** The stages the worker ran a batch of `requests` predictions through (the stage histograms). */
  readonly onStages?: (stages: WireStage[], requests: number) => void;
  /** With tracing on: the span of a batch leaving now, when one of its jobs is sampled. */
  readonly traceBatch?: (jobs: readonly Job[], at: number) => BatchTrace | undefined;
}

interface InFlight {
  readonly batchId: number;
  readonly jobs: Map<string, Job>;
  /** Settles runBatch's promise. */
  readonly done: (outcome: BatchOutcome) => void;
  /** The response timeout, running only for the batch the worker is on (the first in line). */
  timer: NodeJS.Timeout | undefined;
  /** Milliseconds child.send took: the batch's serialisation and write. */
  sendMs: number;
  /** Each job's bytes answered so far, streamed parts included. */
  readonly answered: AnswerBudget;
  /** Its span, when traced. */
  readonly trace: BatchTrace | undefined;
}

/** How a batch ended for the pool: what to give to another worker, and what the batch cost here. */
export interface BatchOutcome {
  /** The jobs the worker never started (it died first). */
  readonly unstarted: Job[];
  /** The worker's own milliseconds on the batch, when it answered it. */
  readonly workMs: number | undefined;
  /** The front end's milliseconds on it, then: its send and the handling of its answer. */
  readonly frontEndMs?: number | undefined;
}

export declare interface WorkerProcess {
  on(event: 'state', listener: (state: WorkerState, previous: WorkerState) => void): this;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'load-failed', listener: (error: TsError) => void): this;
  on(event: 'response-timeout', listener: () => void): this;
}

/**
 * A worker's onnxruntime threads: its share of the cores (workers x threads <= cores), and, for
 * a model with adaptiveThreads, all of them for a lone batch when that is more.
 */
export function threadBudget(
  settings: { readonly maxWorkers: number; readonly adaptiveThreads: boolean },
  cores = cpus().length,
): Pick<WorkerOptions, 'intraOpThreads' | 'wideIntraOpThreads'> {
  const intraOpThreads = Math.max(1, Math.floor(cores / Math.max(1, settings.maxWorkers)));
  return { intraOpThreads, wideIntraOpThreads: settings.adaptiveThreads && cores > intraOpThreads ? cores : undefined };
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface above only types the events' listeners (Node's EventEmitter idiom).
export class WorkerProcess extends EventEmitter implements Tenant {
  readonly id: string;
  readonly startTime = new Date();
  state: WorkerState = 'STARTED';
  /** Resident bytes at the last system-metrics run (metrics/system.ts); 0 before it, or without it. */
  memoryUsage = 0;
  private host: WorkerHost | undefined;
  /** Batches sent and not yet answered, in the order the worker runs them. */
  private inFlight: InFlight[] = [];
  private nextBatchId = 1;
  private exitedFlag = false;
  /** A shared worker asked to unload: it leaves when its host says it did. */
  private leaving: NodeJS.Timeout | undefined;
  /** What a shared worker's load added to its host's PSS; undefined elsewhere, or unmeasured. */
  private addedBytes: number | undefined;
  /** Its load was sent to the host: until then, stopping it needs no unload there. */
  private loadSent = false;
  /** The spawn of its own process threw (start). */
  private spawnError: string | undefined;
  /** Fails the load waiting for its answer: any end of the worker settles it. */
  private abortLoad: ((err: TsError) => void) | undefined;
  private readonly opts: WorkerOptions;

  constructor(opts: WorkerOptions) {
    super();
    this.id = opts.id;
    this.opts = opts;
  }

  /** Its model, `name_version`. */
  get model(): string {
    return `${this.opts.load.modelName}_${this.opts.load.manifest.model.modelVersion}`;
  }

  get messageBound(): number {
    return messageBound(this.opts.load);
  }

  /**
   * Its process's pid; -1 before it has one and once it ended (or left its shared host): a pid
   * that describe showed after its process's end could name another process by then.
   */
  get pid(): number {
    return this.exitedFlag ? -1 : (this.host?.pid ?? -1);
  }

  get exited(): boolean {
    return this.exitedFlag;
  }

  /** In a shared host: its pid is the host's, which other models' workers share. */
  get shared(): boolean {
    return this.host?.shared ?? this.opts.hosts !== undefined;
  }

  /**
   * The memory this worker holds, for the memory budget (models/model-memory.ts): its process's
   * PSS; in a shared host, what its load added to the host plus an equal share of what the host
   * holds besides its models' loads. Undefined until it has loaded, or where /proc cannot say.
   */
  residentBytes(): number | undefined {
    const host = this.host;
    if (!host || this.state !== 'MODEL_LOADED') return undefined;
    const total = host.residentBytes();
    if (!host.shared) return total;
    // Until its load's growth is read, the host's PSS is all of its models': not this one's.
    if (total === undefined || this.addedBytes === undefined) return undefined;
    return this.addedBytes + Math.max(0, total - host.addedBytes()) / Math.max(1, host.size);
  }

  /**
   * What stopping this worker frees, for the memory budget: its process's PSS; in a shared host
   * only what its load added, the rest staying with the host's other workers, unless it is the
   * host's last. Undefined where residentBytes is.
   */
  freedBytes(): number | undefined {
    const host = this.host;
    if (!host?.shared || host.size <= 1) return this.residentBytes();
    return this.state === 'MODEL_LOADED' ? this.addedBytes : undefined;
  }

  /** Measured while loading, in a shared host. */
  get loadBytes(): number | undefined {
    return this.addedBytes;
  }

  /** Starts its process, or finds it a shared host, and loads the model; rejects with the load error. */
  async start(): Promise<void> {
    let host: WorkerHost;
    try {
      host = this.opts.hosts?.hostFor(this.model) ?? this.ownHost();
    } catch (err) {
      // The spawn threw: it ends as a worker whose process died at its start, and is restarted so.
      this.spawnError = err instanceof Error ? err.message : String(err);
      this.opts.onOutput(`The worker process could not be started: ${this.spawnError}`, 'stderr');
      this.onHostExit(null, null, tsError('TSS_ERR_WORKER_DIED'));
      throw this.endedBeforeLoad();
    }
    this.host = host;
    host.attach(this.id, this);
    if (!host.shared) return this.load(host);
    this.addedBytes = await host.measuredLoad(() => this.load(host));
  }

  private ownHost(): WorkerHost {
    const { intraOpThreads, wideIntraOpThreads, nice, permission, env, load } = this.opts;
    return new WorkerHost({
      intraOpThreads,
      wideIntraOpThreads,
      nice,
      permissionDir: permission ? load.modelDir : undefined,
      env,
      shared: false,
      maxResponseSize: load.maxResponseSize,
      onOutput: this.opts.onOutput,
    });
  }

  private load(host: WorkerHost): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(tsError('TSS_ERR_INTERNAL', `Worker ${this.id} did not load the model within the startup timeout`));
        host.kill();
      }, timerMs(this.opts.startupTimeoutMs));
      const onState = (state: WorkerState): void => {
        if (state === 'MODEL_LOADED') settle(() => resolve());
        else fail(tsError('TSS_ERR_INTERNAL', `Worker ${this.id} failed to load the model`));
      };
      const onLoadFailed = (err: TsError): void => fail(err);
      const settle = (fn: () => void): void => {
        clearTimeout(timer);
        this.off('state', onState);
        this.off('load-failed', onLoadFailed);
        this.abortLoad = undefined;
        fn();
      };
      const fail = (err: TsError): void => settle(() => reject(err));
      this.on('state', onState);
      this.on('load-failed', onLoadFailed);
      this.abortLoad = fail;
      // Retired (or ended) while its load waited its turn in a shared host: the load is not sent.
      if (this.exitedFlag || this.state !== 'STARTED' || this.leaving) fail(tsError('TSS_ERR_INTERNAL', `Worker ${this.id} failed to load the model`));
      else {
        this.loadSent = true;
        host.send({ ...this.opts.load, key: this.id });
      }
    });
  }

  /** The most requests its model takes in one batch, as the worker said once loaded; undefined: any. */
  batchLimit: number | undefined;

  /** A batch sent and not yet answered. */
  get busy(): boolean {
    return this.inFlight.length > 0;
  }

  /**
   * Sends a batch; the worker runs it after those already sent. Every job in it gets an answer,
   * an error or "Worker died.", except when the worker dies before starting the batch: those
   * jobs are what the promise resolves with (`unstarted`), for the caller to give to another
   * worker. `wide`: the batch may use every core (adaptiveThreads).
   */
  runBatch(jobs: Job[], wide = false): Promise<BatchOutcome> {
    const host = this.host;
    if (!host?.connected || this.state !== 'MODEL_LOADED' || this.leaving) {
      for (const job of jobs) job.fail(tsError('TSS_ERR_WORKER_DIED'));
      return Promise.resolve({ unstarted: [], workMs: undefined });
    }
    const batchId = this.nextBatchId++;
    return new Promise((resolve) => {
      const trace = this.opts.traceBatch?.(jobs, performance.now());
      const batch: InFlight = {
        batchId,
        jobs: new Map(jobs.map((j) => [j.id, j])),
        done: resolve,
        timer: undefined,
        sendMs: 0,
        answered: new AnswerBudget(this.opts.load.maxResponseSize),
        trace,
      };
      this.inFlight.push(batch);
      this.startResponseTimer();
      const message: PredictMessage = { kind: 'predict', key: this.id, batchId, requests: jobs.map((j) => j.request), wide };
      const began = performance.now();
      host.send(trace ? { ...message, trace: trace.wire } : message);
      batch.sendMs = performance.now() - began;
    });
  }

  /**
   * Stops the worker; in-flight jobs get "Worker died.". Its own process is ended; in a shared
   * host its model is unloaded there (after the batches sent to it), and the host serves on.
   */
  kill(): void {
    const host = this.host;
    if (!host || this.exitedFlag) return;
    if (!host.shared) {
      host.kill();
      return;
    }
    if (this.leaving) return;
    // Its load still waits its turn in the host: there is nothing there to unload.
    if (!this.loadSent) {
      this.left(null);
      return;
    }
    if (!host.connected) return;
    this.leaving = setTimeout(() => this.left(null), UNLOAD_WAIT_MS);
    host.send({ kind: 'unload', key: this.id });
  }

  /** A shared worker's unload is over (its host said so, or it took too long): it exits alone. */
  private left(code: number | null): void {
    clearTimeout(this.leaving);
    this.host?.detach(this.id);
    this.onHostExit(code, null, tsError('TSS_ERR_WORKER_DIED'));
  }

  moveTo(next: WorkerState): void {
    const previous = this.state;
    if (!canMove(previous, next)) {
      if (!isStaleMove(previous, next)) process.emitWarning(`Worker ${this.id}: no move from ${previous} to ${next}`, WORKER_STATE_WARNING);
      return;
    }
    this.state = next;
    this.emit('state', next, previous);
  }

  onMessage(msg: FromWorker): void {
    switch (msg.kind) {
      case 'loaded':
        this.batchLimit = msg.batchLimit;
        this.moveTo('MODEL_LOADED');
        return;
      case 'load-failed':
        this.emit('load-failed', errorFromWire(msg.error.code, msg.error.message, msg.error.status));
        this.moveTo('ERROR');
        this.kill();
        return;
      case 'unloaded':
        if (this.leaving) this.left(0);
        return;
      case 'intermediate':
        this.forEachItem(msg.batchId, msg.items, (job, item) => (item.final ? job.respond(item) : job.intermediate(item)));
        return;
      case 'reply':
      case 'batch-failed':
        this.onBatchAnswered(msg);
    }
  }

  private onBatchAnswered(msg: Extract<FromWorker, { kind: 'reply' | 'batch-failed' }>): void {
    const began = performance.now();
    const batch = this.runningBatch(msg.batchId);
    const quiet = batch !== undefined && allQuiet(batch.jobs.values());
    if (!quiet) this.reportMetrics(batch, msg.metrics);
    if (batch && !quiet) this.opts.onStages?.(msg.stages, batch.jobs.size);
    batch?.trace?.end(msg.stages, msg.kind === 'batch-failed' ? msg.error.message : undefined);
    if (msg.kind === 'reply') {
      this.forEachItem(msg.batchId, msg.items, (job, item) => job.respond(item));
      const frontEndMs = batch ? batch.sendMs + performance.now() - began : undefined;
      this.finishBatch(msg.batchId, () => tsError('TSS_ERR_PREDICTION_BATCH_MISMATCH'), msg.workMs, frontEndMs);
    } else {
      this.finishBatch(msg.batchId, () => errorFromWire(msg.error.code, msg.error.message, msg.error.status));
    }
    if (batch && !quiet) this.opts.onBatchHandled(batch.sendMs + performance.now() - began);
  }

  /** The batch the worker is on, if it is `batchId`: a message about any other is stale. */
  private runningBatch(batchId: number): InFlight | undefined {
    const batch = this.inFlight[0];
    return batch?.batchId === batchId ? batch : undefined;
  }

  /** A stale batch's metrics (it is no longer the one running) are reported without request ids. */
  private reportMetrics(batch: InFlight | undefined, metrics: WireMetric[]): void {
    if (metrics.length > 0) this.opts.onMetrics(metrics, batch ? [...batch.jobs.keys()] : []);
  }

  private forEachItem(batchId: number, items: WireResponse[], fn: (job: Job, item: WireResponse) => void): void {
    const batch = this.runningBatch(batchId);
    if (!batch) return;
    for (const item of items) {
      const job = batch.jobs.get(item.id);
      // A job answered before its batch's end (an error, a final answer) is not answered again, nor its bytes counted twice.
      if (!job || job.settled) continue;
      const answer = this.sendable(batch, item);
      if (answer instanceof Error) {
        job.fail(answer);
      } else {
        fn(job, { ...answer, body: Buffer.from(answer.body.buffer, answer.body.byteOffset, answer.body.byteLength) });
      }
    }
  }

  /** The item as a route may send it, or the error its job gets instead. */
  private sendable(batch: InFlight, item: WireResponse): WireResponse | TsError {
    if (item.error) return errorFromWire(item.error.code, item.error.message, item.error.status);
    const answer = checkedAnswer(item);
    if (typeof answer === 'string') return tsError('TSS_ERR_PREDICTION_BAD_ANSWER', answer);
    // The worker checks the size too; a handler that wrote to the channel itself did not.
    if (!batch.answered.take(item.id, answerBytes(answer))) return responseTooLarge(batch.answered.max);
    return answer;
  }

  /**
   * Settles the batch; any job still unanswered gets the error `unanswered` makes. It is made
   * only then: an Error captures a stack, which every successful batch would pay for. `workMs`
   * and `frontEndMs`: the worker's and the front end's time on it, when the worker answered it.
   */
  private finishBatch(batchId: number, unanswered: () => TsError, workMs?: number, frontEndMs?: number): void {
    const batch = this.runningBatch(batchId);
    if (!batch) return;
    this.inFlight.shift();
    clearTimeout(batch.timer);
    let error: TsError | undefined;
    for (const job of batch.jobs.values()) {
      if (!job.settled) job.fail((error ??= unanswered()));
    }
    // Ended already when the worker answered it; a worker that died ends it here with why.
    if (batch.trace && !batch.trace.ended) batch.trace.end([], (error ??= unanswered()).message);
    batch.done({ unstarted: [], workMs, frontEndMs });
    this.startResponseTimer();
  }

  /** The worker runs its batches one after another, so only the first in line is timed. */
  private startResponseTimer(): void {
    const running = this.inFlight[0];
    if (running && !running.timer) running.timer = setTimeout(() => this.onResponseTimeout(), timerMs(this.opts.responseTimeoutMs));
  }

  /** A batch that hangs hangs its process: ended, with every worker in it. */
  private onResponseTimeout(): void {
    this.opts.onOutput(`Backend worker did not respond in given time`, 'stderr');
    this.emit('response-timeout');
    this.host?.kill();
  }

  /** Why its process never ran (its spawn failed); undefined for one that started. */
  get startFailure(): string | undefined {
    return this.spawnError ?? this.host?.startError;
  }

  /** What its load answers when the worker ends first. */
  private endedBeforeLoad(): TsError {
    const why = this.startFailure;
    return tsError('TSS_ERR_INTERNAL', `Worker ${this.id} ${why ? `could not start its process: ${why}` : 'ended before it loaded the model'}`);
  }

  /** Its process ended, or, in a shared host, its model was unloaded there (`error` then unused). */
  onHostExit(code: number | null, signal: NodeJS.Signals | null, error: TsError): void {
    if (this.exitedFlag) return;
    this.exitedFlag = true;
    this.memoryUsage = 0;
    this.abortLoad?.(this.endedBeforeLoad());
    // The batch it was on fails; those waiting behind it were never started and can go elsewhere.
    const [running, ...waiting] = this.inFlight;
    this.inFlight = running ? [running] : [];
    if (running) this.finishBatch(running.batchId, () => error);
    for (const batch of waiting) batch.done({ unstarted: [...batch.jobs.values()].filter((j) => !j.settled), workMs: undefined });
    this.moveTo('STOPPED');
    this.emit('exit', code, signal);
  }
}

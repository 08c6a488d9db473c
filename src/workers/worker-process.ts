/**
 * @module workers/worker-process
 * The front end's handle on one worker process. Workers are processes, not threads: onnxruntime
 * and sharp are native code, and a segfault, an abort or an out-of-memory kill in a thread would
 * take the whole server with it. A process dies alone; this handle fails its in-flight batch with
 * "Worker died." and reports the exit so the pool can start a replacement.
 */
import { fork, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { cpus, getPriority, setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { errorFromWire, tsError, type TsError } from '../errors.js';
import { timerMs } from '../timer-ms.js';
import { allQuiet, type Job } from '../batching/job.js';
import { canMove, isStaleMove, WORKER_STATE_WARNING, type WorkerState } from './worker-state.js';
import { checkedAnswer } from '../protocol/answer-head.js';
import { AnswerBudget, messageBound, responseTooLarge, watchMessageSize } from '../protocol/answer-size.js';
import { fromWorker } from '../protocol/message-shape.js';
import { readLines } from './output-lines.js';
import { permissionArgs } from './permissions.js';
import {
  INTRA_OP_THREADS_ENV,
  ORT_TELEMETRY_OFF,
  WATCH_PARENT_ENV,
  WIDE_INTRA_OP_THREADS_ENV,
  type FromWorker,
  type LoadMessage,
  type WireMetric,
  type WireResponse,
} from '../protocol/messages.js';

const ENTRY = fileURLToPath(new URL('../worker/entry.js', import.meta.url));

export interface WorkerOptions {
  readonly id: string;
  readonly load: LoadMessage;
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
  /** Each line the handler prints, with its stream. */
  readonly onOutput: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Metrics the handler emitted while answering the requests `requestIds`. */
  readonly onMetrics: (metrics: WireMetric[], requestIds: string[]) => void;
  /** The server's own milliseconds on a batch, sending it and handing out its answers (WorkerThreadTime). */
  readonly onBatchHandled: (ms: number) => void;
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
}

/** How a batch ended for the pool: what to give to another worker, and what the batch cost here. */
export interface BatchOutcome {
  /** The jobs the worker never started (it died first). */
  readonly unstarted: Job[];
  /** The worker's own milliseconds on the batch, when it answered it. */
  readonly workMs: number | undefined;
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

/**
 * Makes the worker `nice` steps nicer than the server (at most 19). Past capacity the workers and
 * the front end all want the cores; as equals, the front end got its share late and requests it
 * had not read, refusals included, waited in the kernel for seconds (docs/performance.md,
 * "Overload over 20 s, workers that yield the CPU, ..."). Set on the main thread before the model
 * loads, so that onnxruntime's threads inherit it.
 */
function yieldToFrontEnd(child: ChildProcess, nice: number): void {
  if (nice === 0 || child.pid === undefined) return;
  try {
    setPriority(child.pid, Math.min(19, getPriority() + nice));
  } catch {
    /* exited already: its exit is reported as any other */
  }
}

/**
 * Starts a worker process that dies with the front end, also after a `kill -9` leaves the front
 * end no moment to stop it, while the handler keeps the worker's main thread too busy to see its
 * IPC channel close. On Linux the kernel sees to it, at no cost: the worker runs under
 * util-linux's `setpriv --pdeathsig KILL` (PR_SET_PDEATHSIG, which Node has no call for; a native
 * addon for one prctl is not worth its build on every platform). Without setpriv, the worker
 * watches its parent from a thread of its own (worker/parent-watch.ts).
 */
function startProcess(env: NodeJS.ProcessEnv, execArgv: string[]): ChildProcess {
  const options: Pick<SpawnOptions, 'serialization' | 'stdio'> = { serialization: 'advanced', stdio: ['ignore', 'pipe', 'pipe', 'ipc'] };
  const setpriv = parentDeathSignal();
  if (setpriv) return spawn(setpriv, ['--pdeathsig', 'KILL', '--', process.execPath, ...execArgv, ENTRY], { ...options, env });
  return fork(ENTRY, [], { ...options, execArgv, env: { ...env, [WATCH_PARENT_ENV]: '1' } });
}

let setprivPath: string | undefined | null = null;

/** setpriv's path, when it is there and knows --pdeathsig (util-linux 2.33 and later); looked for once. */
function parentDeathSignal(): string | undefined {
  if (setprivPath === null) setprivPath = process.platform === 'linux' ? findSetpriv() : undefined;
  return setprivPath;
}

function findSetpriv(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const path = join(dir, 'setpriv');
    try {
      accessSync(path, constants.X_OK);
    } catch {
      continue;
    }
    return spawnSync(path, ['--help'], { encoding: 'utf8', timeout: 5000 }).stdout?.includes('--pdeathsig') ? path : undefined;
  }
  return undefined;
}

/**
 * The server's environment without the variables `blacklist_env_vars` names (secrets a handler
 * has no business reading), as TorchServe gives its workers.
 */
export function workerEnvironment(env: NodeJS.ProcessEnv, blacklist: RegExp | undefined): NodeJS.ProcessEnv {
  return blacklist ? Object.fromEntries(Object.entries(env).filter(([name]) => !blacklist.test(name))) : env;
}

/** glibc's starting mmap threshold, 128 KiB, made fixed. */
export const MALLOC_MMAP_THRESHOLD = { MALLOC_MMAP_THRESHOLD_: '131072' };

/**
 * `env` with glibc malloc's mmap threshold fixed at its starting value, unless the operator set
 * malloc's tunables already. glibc raises the threshold each time a block it mapped is freed, up
 * to 32 MiB, so that the large blocks onnxruntime allocates while it opens a model (the weights
 * as read from the file, before the optimiser rewrites them) end up in the heap, where freeing
 * them returns nothing to the system: a resnet18 worker held 168 MB instead of 80, and no less
 * CPU per run (bench/memory.mjs, issue 33). With the threshold fixed, every block of 128 KiB or
 * more is mapped and unmapped on its own. Other C libraries (musl) ignore the variable.
 */
export function mallocReturningMemory(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const set = Object.keys(env).some((name) => name.startsWith('MALLOC_') || name === 'GLIBC_TUNABLES');
  return set ? env : { ...env, ...MALLOC_MMAP_THRESHOLD };
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface above only types the events' listeners (Node's EventEmitter idiom).
export class WorkerProcess extends EventEmitter {
  readonly id: string;
  readonly startTime = new Date();
  state: WorkerState = 'STARTED';
  /** Resident bytes at the last system-metrics run (metrics/system.ts); 0 before it, or without it. */
  memoryUsage = 0;
  private child: ChildProcess | undefined;
  /** Batches sent and not yet answered, in the order the worker runs them. */
  private inFlight: InFlight[] = [];
  private nextBatchId = 1;
  private exitedFlag = false;
  /** Set when we ended the process; a SIGKILL nobody here sent came from the OS. */
  private killedByUs = false;
  /** Why we ended it, when that is what its batch must answer (it sent more than any answer may be). */
  private killedFor: TsError | undefined;
  private readonly opts: WorkerOptions;

  constructor(opts: WorkerOptions) {
    super();
    this.id = opts.id;
    this.opts = opts;
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  get exited(): boolean {
    return this.exitedFlag;
  }

  /** Spawns the process and loads the model; rejects with the load error. */
  start(): Promise<void> {
    const child = startProcess(this.environment(), this.opts.permission ? permissionArgs(this.opts.load.modelDir) : []);
    this.child = child;
    yieldToFrontEnd(child, this.opts.nice);
    this.pipeOutput(child);
    this.boundMessages(child);
    child.on('message', (msg: unknown) => this.onMessage(msg));
    child.on('exit', (code, signal) => this.onExit(code, signal));
    child.on('error', () => {
      /* reported through 'exit' */
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(tsError('TSS_ERR_INTERNAL', `Worker ${this.id} did not load the model within the startup timeout`));
        this.kill();
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
        fn();
      };
      const fail = (err: TsError): void => settle(() => reject(err));
      this.on('state', onState);
      this.on('load-failed', onLoadFailed);
      child.send(this.opts.load);
    });
  }

  /**
   * The process's environment: the server's (workerEnvironment), with malloc's setting, its
   * onnxruntime thread budget and onnxruntime's telemetry off, whatever the server's environment
   * says (a model server sends nothing anywhere; docs/deploy.md, "No telemetry").
   */
  private environment(): NodeJS.ProcessEnv {
    const { env, intraOpThreads, wideIntraOpThreads } = this.opts;
    const wide = wideIntraOpThreads === undefined ? {} : { [WIDE_INTRA_OP_THREADS_ENV]: String(wideIntraOpThreads) };
    return { ...mallocReturningMemory(env), [INTRA_OP_THREADS_ENV]: String(intraOpThreads), ...wide, ...ORT_TELEMETRY_OFF };
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
    const child = this.child;
    if (!child?.connected || this.state !== 'MODEL_LOADED') {
      for (const job of jobs) job.fail(tsError('TSS_ERR_WORKER_DIED'));
      return Promise.resolve({ unstarted: [], workMs: undefined });
    }
    const batchId = this.nextBatchId++;
    return new Promise((resolve) => {
      const batch: InFlight = {
        batchId,
        jobs: new Map(jobs.map((j) => [j.id, j])),
        done: resolve,
        timer: undefined,
        sendMs: 0,
        answered: new AnswerBudget(this.opts.load.maxResponseSize),
      };
      this.inFlight.push(batch);
      this.startResponseTimer();
      const began = performance.now();
      child.send({ kind: 'predict', batchId, requests: jobs.map((j) => j.request), wide });
      batch.sendMs = performance.now() - began;
    });
  }

  /** Ends the process; in-flight jobs get "Worker died.". */
  kill(): void {
    this.killedByUs = true;
    this.child?.kill('SIGKILL');
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

  private onMessage(raw: unknown): void {
    const msg = fromWorker(raw);
    if (!msg) {
      // Only a handler writing to the channel itself sends one: its batch gets "Worker died.".
      this.opts.onOutput('The worker sent a message that is not of the worker protocol; it is stopped', 'stderr');
      this.kill();
      return;
    }
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
      case 'intermediate':
        this.forEachItem(msg.batchId, msg.items, (job, item) => job.intermediate(item));
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
    if (msg.kind === 'reply') {
      this.forEachItem(msg.batchId, msg.items, (job, item) => job.respond(item));
      this.finishBatch(msg.batchId, () => tsError('TSS_ERR_PREDICTION_BATCH_MISMATCH'), msg.workMs);
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
      if (!job) continue;
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
    if (!batch.answered.take(item.id, answer.body.byteLength)) return responseTooLarge(batch.answered.max);
    return answer;
  }

  /**
   * Settles the batch; any job still unanswered gets the error `unanswered` makes. It is made
   * only then: an Error captures a stack, which every successful batch would pay for. `workMs`:
   * the worker's time on it, when it answered it.
   */
  private finishBatch(batchId: number, unanswered: () => TsError, workMs?: number): void {
    const batch = this.runningBatch(batchId);
    if (!batch) return;
    this.inFlight.shift();
    clearTimeout(batch.timer);
    let error: TsError | undefined;
    for (const job of batch.jobs.values()) {
      if (!job.settled) job.fail((error ??= unanswered()));
    }
    batch.done({ unstarted: [], workMs });
    this.startResponseTimer();
  }

  /** The worker runs its batches one after another, so only the first in line is timed. */
  private startResponseTimer(): void {
    const running = this.inFlight[0];
    if (running && !running.timer) running.timer = setTimeout(() => this.onResponseTimeout(), timerMs(this.opts.responseTimeoutMs));
  }

  private onResponseTimeout(): void {
    this.opts.onOutput(`Backend worker did not respond in given time`, 'stderr');
    this.emit('response-timeout');
    this.kill();
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.exitedFlag = true;
    // The batch it was on fails; those waiting behind it were never started and can go elsewhere.
    const [running, ...waiting] = this.inFlight;
    this.inFlight = running ? [running] : [];
    if (running) this.finishBatch(running.batchId, () => this.killedFor ?? exitError(code, signal === 'SIGKILL' && !this.killedByUs));
    for (const batch of waiting) batch.done({ unstarted: [...batch.jobs.values()].filter((j) => !j.settled), workMs: undefined });
    this.moveTo('STOPPED');
    this.emit('exit', code, signal);
  }

  private pipeOutput(child: ChildProcess): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const source = child[stream];
      if (source) readLines(source, (line) => this.opts.onOutput(line, stream));
    }
  }

  /**
   * A message larger than any batch of answers may be (a handler's own process.send) is not read:
   * the worker is ended as its first bytes arrive, and its batch answers that its response was too
   * large.
   */
  private boundMessages(child: ChildProcess): void {
    const { load } = this.opts;
    const bound = messageBound(load);
    const watched = watchMessageSize(child, bound, (bytes) => {
      this.opts.onOutput(`Worker sent a message of ${bytes} bytes, over the ${bound} any batch of answers may take: ending it`, 'stderr');
      this.killedFor = responseTooLarge(load.maxResponseSize);
      child.disconnect();
      this.kill();
    });
    if (!watched) warnUnboundedMessages();
  }
}

let unboundedWarned = false;

/** Said once: this Node's IPC could not be bounded as it is read, only each message once it has arrived. */
function warnUnboundedMessages(): void {
  if (unboundedWarned) return;
  unboundedWarned = true;
  process.emitWarning("Worker messages are checked against max_response_size only once read whole: this Node's IPC channel has no size to watch");
}

/**
 * TorchServe answers 507 when the worker was killed for memory (exit status 137: a SIGKILL we did
 * not send, which on Linux is the OOM killer), else 500.
 */
function exitError(code: number | null, killedByOs: boolean): TsError {
  const err = tsError('TSS_ERR_WORKER_DIED');
  return code === 137 || killedByOs ? errorFromWire('TSS_ERR_WORKER_DIED', err.message, 507) : err;
}

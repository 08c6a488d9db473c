/**
 * @module runtime/onnx
 * onnxruntime-node sessions with the thread budget a model server needs on a small machine:
 * the front end gives each worker process its share of the cores (workers x threads <= cores,
 * in TSSERVE_INTRA_OP_THREADS), and no thread busy-waits between runs, which on two cores takes a
 * whole core from the request path.
 *
 * A model with `adaptiveThreads: true` (model-config.yaml) also gets every core's worth of threads
 * (TSSERVE_WIDE_INTRA_OP_THREADS) for a batch that runs while the model's other workers idle: a
 * session's thread count is fixed when it opens, so such a worker opens each model twice and the
 * front end says, batch by batch, which one may run (inBatch).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import * as ort from 'onnxruntime-node';
import { INTRA_OP_THREADS_ENV, WIDE_INTRA_OP_THREADS_ENV } from '../protocol/messages.js';

export interface SessionOptions {
  /** Defaults to the worker's share of the cores, or all of them for a lone batch (adaptiveThreads). */
  intraOpThreads?: number;
}

/** The batch being run: whether it may use every core, the front end's word for that batch. */
const currentBatch = new AsyncLocalStorage<{ readonly wide: boolean }>();

/** Runs `work` (a batch through the handler) with the sessions' thread choice for it. */
export function inBatch<T>(wide: boolean, work: () => Promise<T>): Promise<T> {
  return currentBatch.run({ wide }, work);
}

function wideBatch(): boolean {
  return currentBatch.getStore()?.wide ?? false;
}

/**
 * The intra-op threads the current batch's sessions run with: the worker's share of the cores, or
 * every core while the model's other workers idle (adaptiveThreads). For a handler that runs
 * other multi-threaded native code and wants to size it alike.
 */
export function batchThreads(): number {
  const wide = threadsFromEnv(WIDE_INTRA_OP_THREADS_ENV);
  return wideBatch() && wide !== undefined ? wide : workerThreadBudget();
}

export async function createSession(modelPath: string, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const narrow = await openSession(modelPath, opts.intraOpThreads ?? workerThreadBudget());
  const wide = opts.intraOpThreads === undefined ? threadsFromEnv(WIDE_INTRA_OP_THREADS_ENV) : undefined;
  return wide === undefined ? narrow : new LoadFollowingSession(narrow, await openSession(modelPath, wide));
}

function openSession(modelPath: string, threads: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  });
}

function workerThreadBudget(): number {
  return threadsFromEnv(INTRA_OP_THREADS_ENV) ?? 1;
}

function threadsFromEnv(name: string): number | undefined {
  const n = Number(process.env[name]);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * One model open twice, with the worker's share of the threads and with all of them; each run
 * goes to the one the current batch may use (inBatch).
 */
class LoadFollowingSession implements ort.InferenceSession {
  private readonly narrow: ort.InferenceSession;
  private readonly wide: ort.InferenceSession;

  constructor(narrow: ort.InferenceSession, wide: ort.InferenceSession) {
    this.narrow = narrow;
    this.wide = wide;
  }

  run(feeds: ort.InferenceSession.FeedsType, options?: ort.InferenceSession.RunOptions): Promise<ort.InferenceSession.ReturnType>;
  run(
    feeds: ort.InferenceSession.FeedsType,
    fetches: ort.InferenceSession.FetchesType,
    options?: ort.InferenceSession.RunOptions,
  ): Promise<ort.InferenceSession.ReturnType>;
  run(
    feeds: ort.InferenceSession.FeedsType,
    fetchesOrOptions?: ort.InferenceSession.FetchesType | ort.InferenceSession.RunOptions,
    options?: ort.InferenceSession.RunOptions,
  ): Promise<ort.InferenceSession.ReturnType> {
    const session = wideBatch() ? this.wide : this.narrow;
    return session.run(feeds, fetchesOrOptions as ort.InferenceSession.FetchesType, options);
  }

  async release(): Promise<void> {
    await Promise.all([this.narrow.release(), this.wide.release()]);
  }

  startProfiling(): void {
    this.narrow.startProfiling();
    this.wide.startProfiling();
  }

  endProfiling(): void {
    this.narrow.endProfiling();
    this.wide.endProfiling();
  }

  get inputNames(): readonly string[] {
    return this.narrow.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.narrow.outputNames;
  }

  get inputMetadata(): readonly ort.InferenceSession.ValueMetadata[] {
    return this.narrow.inputMetadata;
  }

  get outputMetadata(): readonly ort.InferenceSession.ValueMetadata[] {
    return this.narrow.outputMetadata;
  }
}

export { ort };

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
 * front end says, batch by batch, which one may run (inBatch). Both read the model's weights from
 * one copy of them (runtime/model-bytes): resnet18's two take 70 MB PSS instead of 118.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import * as ort from 'onnxruntime-node';
import { INTRA_OP_THREADS_ENV, ORT_TELEMETRY_OFF, WIDE_INTRA_OP_THREADS_ENV } from '../protocol/messages.js';
import { optimizedModelBytes } from './model-bytes.js';

export interface SessionOptions {
  /** Defaults to the worker's share of the cores, or all of them for a lone batch (adaptiveThreads). */
  intraOpThreads?: number;
}

/** A model's sessions: closed together when a shared host drops the model (worker/entry.ts). */
export type SessionSet = Set<Pick<ort.InferenceSession, 'release' | 'inputMetadata'>>;

/** The sessions of the model whose handler is running: what createSession adds each new one to. */
const currentOwner = new AsyncLocalStorage<SessionSet>();

/** Runs `work` (a model's load or batch) so that the sessions it opens are added to `sessions`. */
export function ownedBy<T>(sessions: SessionSet, work: () => Promise<T>): Promise<T> {
  return currentOwner.run(sessions, work);
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
  const session = await openSession(modelPath, opts);
  currentOwner.getStore()?.add(session);
  return session;
}

async function openSession(modelPath: string, opts: SessionOptions): Promise<ort.InferenceSession> {
  turnOffOrtTelemetry();
  const narrow = opts.intraOpThreads ?? workerThreadBudget();
  const wide = opts.intraOpThreads === undefined ? threadsFromEnv(WIDE_INTRA_OP_THREADS_ENV) : undefined;
  if (wide === undefined) return openFile(modelPath, narrow);
  // Two sessions of one model: both read the weights from one copy of them, when there is one.
  const bytes = await optimizedModelBytes(modelPath);
  const open = (threads: number): Promise<ort.InferenceSession> => (bytes ? openBytes(bytes, threads) : openFile(modelPath, threads));
  return new LoadFollowingSession(await open(narrow), await open(wide));
}

/**
 * The most requests one run of a model's sessions takes, as far as their inputs say: an input of
 * two or more axes whose first is a fixed number (a model exported with batch 1) takes that many;
 * a named or unknown axis (a dynamic batch), any (undefined). The worker tells the front end, whose
 * adaptive batching (batching/adaptive.ts) then never sends it a larger batch. A model's own
 * sessions, not the process's: a shared host holds other models' too.
 */
export function sessionsBatchLimit(sessions: SessionSet): number | undefined {
  let limit: number | undefined;
  for (const session of sessions) {
    for (const input of session.inputMetadata) {
      const first = input.isTensor && input.shape.length >= 2 ? input.shape[0] : undefined;
      if (typeof first === 'number' && first > 0) limit = Math.min(limit ?? first, first);
    }
  }
  return limit;
}

/**
 * Turns onnxruntime's telemetry off for this process (protocol/messages.ts, ORT_TELEMETRY_OFF).
 * Workers have it from the front end; this is for the other programs that run sessions (a
 * handler's own scripts, tsserve-convert, tests). It takes effect only before the process's first
 * session: onnxruntime reads the switch once, when that session creates its environment.
 */
export function turnOffOrtTelemetry(): void {
  Object.assign(process.env, ORT_TELEMETRY_OFF);
}

function openFile(modelPath: string, threads: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(modelPath, threadOptions(threads, 'all', {}));
}

/** A session of an optimised model in ORT format (runtime/model-bytes), its weights read in place from `bytes`. */
function openBytes(bytes: Uint8Array, threads: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(
    bytes,
    threadOptions(threads, 'disabled', { use_ort_model_bytes_directly: '1', use_ort_model_bytes_for_initializers: '1' }),
  );
}

/** The thread budget with no spinning, the optimisations still to do, and other session config entries. */
function threadOptions(
  threads: number,
  optimisation: ort.InferenceSession.SessionOptions['graphOptimizationLevel'],
  entries: Record<string, string>,
): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: optimisation,
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' }, ...entries } },
  };
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

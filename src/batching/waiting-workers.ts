/**
 * @module batching/waiting-workers
 * The workers waiting on a queue for their next batch, in the order they asked, for both queues
 * (JobQueue, SequenceQueue): each one's batch so far, its maxBatchDelay timer and its abort
 * signal. The queue decides which jobs join a batch; this decides when the batch leaves.
 */
import type { Job } from './job.js';

/**
 * Starts a batch's maxBatchDelay clock: `fire` runs after `ms` unless the answer, which stops the
 * clock, is called first. Node's timers, unless a test moves a clock of its own.
 */
export type StartTimer = (fire: () => void, ms: number) => () => void;

/**
 * Node's timers fire 1 ms at the soonest: a shorter wait (adaptive batching's, for requests
 * expected within a fraction of a millisecond) lasts to the end of the event loop's turn instead,
 * so the requests read in the same turn join the batch and none waits for a timer.
 */
export const nodeTimer: StartTimer = (fire, ms) => {
  if (ms < 1) {
    const immediate = setImmediate(fire);
    return () => clearImmediate(immediate);
  }
  const timer = setTimeout(fire, ms);
  return () => clearTimeout(timer);
};

/**
 * How long a forming batch waits for more: maxBatchDelay's fixed milliseconds from its first job,
 * or a choice made again each time a job joins (batching/adaptive.ts), milliseconds from then,
 * given the batch so far and how many other workers wait idle behind it; 0: it leaves now.
 */
export type BatchDelay = number | ((batch: readonly Job[], idleBehind: number) => number);

export interface Waiter {
  /** The worker slot asking (a stateful model's sequences stay with their slot). */
  readonly owner: object | undefined;
  readonly max: number;
  readonly delay: BatchDelay;
  readonly batch: Job[];
  readonly resolve: (jobs: Job[]) => void;
  /** Detaches the waiter from its signal: a worker polls with one signal for its whole life. */
  readonly detach: () => void;
  /** Stops its maxBatchDelay clock, once started. */
  stopTimer: (() => void) | undefined;
}

export class WaitingWorkers {
  private readonly waiters: Waiter[] = [];
  /** Takes back the jobs of a waiter whose worker went away. */
  private readonly onCancel: (batch: Job[]) => void;
  /** Runs after a batch has left, for the queue to serve the next waiter. */
  private readonly onDeliver: () => void;
  private readonly startTimer: StartTimer;

  constructor(onCancel: (batch: Job[]) => void, onDeliver: () => void = () => {}, startTimer: StartTimer = nodeTimer) {
    this.onCancel = onCancel;
    this.onDeliver = onDeliver;
    this.startTimer = startTimer;
  }

  /** The waiters, oldest first. */
  get all(): readonly Waiter[] {
    return this.waiters;
  }

  /**
   * A worker's wait for 1..max jobs; when `signal` aborts it ends with none and the jobs it held
   * go back (onCancel). The queue fills the new waiter on its next pump.
   */
  wait(max: number, delay: BatchDelay, signal: AbortSignal | undefined, owner: object | undefined): Promise<Job[]> {
    if (signal?.aborted) return Promise.resolve([]);
    return new Promise((resolve) => {
      const onAbort = (): void => this.cancel(waiter);
      const detach = (): void => signal?.removeEventListener('abort', onAbort);
      const waiter: Waiter = { owner, max: Math.max(1, max), delay, batch: [], resolve, detach, stopTimer: undefined };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * After the queue has filled `waiter`: its batch leaves when full, when it does not wait, or
   * when the queue says `now`; otherwise its first job starts the maxBatchDelay clock (a chosen
   * delay restarts it with each job). True when it left.
   */
  ripen(waiter: Waiter, now = false): boolean {
    if (waiter.batch.length === 0) return false;
    const { delay } = waiter;
    const chosen = typeof delay === 'function';
    const delayMs = now || waiter.batch.length >= waiter.max ? 0 : chosen ? delay(waiter.batch, this.waiters.length - 1) : delay;
    if (delayMs <= 0) {
      this.deliver(waiter);
      return true;
    }
    if (chosen) waiter.stopTimer?.();
    if (chosen || !waiter.stopTimer) waiter.stopTimer = this.startTimer(() => this.deliver(waiter), delayMs);
    return false;
  }

  private deliver(waiter: Waiter): void {
    if (!this.remove(waiter)) return;
    waiter.detach();
    waiter.resolve(waiter.batch);
    this.onDeliver();
  }

  private cancel(waiter: Waiter): void {
    if (!this.remove(waiter)) return;
    waiter.resolve([]);
    this.onCancel(waiter.batch);
  }

  private remove(waiter: Waiter): boolean {
    const i = this.waiters.indexOf(waiter);
    if (i < 0) return false;
    this.waiters.splice(i, 1);
    waiter.stopTimer?.();
    return true;
  }
}

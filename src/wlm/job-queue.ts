/**
 * @module wlm/job-queue
 * The bounded FIFO of one model version, and TorchServe's batching rule for taking from it.
 * Workers wait in line; only the worker at the head collects a batch:
 *
 *   t0: first job arrives ──▶ head worker takes it, starts the maxBatchDelay clock
 *   ... more jobs join its batch until batchSize ...
 *   t0 + maxBatchDelay, or batch full ──▶ batch goes to that worker; the next worker is head
 *
 * With batchSize 1 there is no waiting. A full queue refuses the job at once (the caller answers 503).
 */
import type { Job } from './job.js';

/** What a worker pool takes batches from: this FIFO, or a stateful model's SequenceQueue. */
export interface BatchQueue {
  readonly size: number;
  readonly remainingCapacity: number;
  /** False when the job cannot be queued: the caller answers 503. */
  offer(job: Job): boolean;
  /** A batch for the worker slot `owner` (a stateful model's sequences stay with their slot). */
  poll(max: number, delayMs: number, signal?: AbortSignal, owner?: object): Promise<Job[]>;
  takeFullBatch(max: number): Job[];
  requeue(jobs: Job[]): void;
  /** The worker slot `owner` is gone. */
  release(owner: object): void;
  drain(): Job[];
}

interface Waiter {
  readonly max: number;
  readonly delayMs: number;
  readonly resolve: (jobs: Job[]) => void;
  /** Detaches the waiter from its signal: a worker polls with one signal for its whole life. */
  readonly detach: () => void;
  batch: Job[];
  timer: NodeJS.Timeout | undefined;
}

export class JobQueue implements BatchQueue {
  readonly capacity: number;
  private jobs: Job[] = [];
  private waiters: Waiter[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get size(): number {
    return this.jobs.length;
  }

  get remainingCapacity(): number {
    return Math.max(0, this.capacity - this.jobs.length);
  }

  /** False when the queue is full. */
  offer(job: Job): boolean {
    if (this.jobs.length >= this.capacity) return false;
    this.jobs.push(job);
    this.pump();
    return true;
  }

  /**
   * Resolves with 1..max jobs, following the batching rule above, or with none when `signal`
   * aborts (the worker is going away); jobs it was holding go back to the front of the queue.
   */
  poll(max: number, delayMs: number, signal?: AbortSignal): Promise<Job[]> {
    if (signal?.aborted) return Promise.resolve([]);
    return new Promise((resolve) => {
      const onAbort = (): void => this.cancel(waiter);
      const detach = (): void => signal?.removeEventListener('abort', onAbort);
      const waiter: Waiter = { max: Math.max(1, max), delayMs, resolve, detach, batch: [], timer: undefined };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pump();
    });
  }

  /**
   * A full batch at once for a worker still busy with another, so that the next batch is already
   * in the worker when the current one ends; or none. Never while an idle worker waits (it comes
   * first), never a partial batch (it would have grown meanwhile).
   */
  takeFullBatch(max: number): Job[] {
    if (this.waiters.length > 0 || this.jobs.length < max) return [];
    return this.jobs.splice(0, max).filter((j) => !j.settled);
  }

  /** Puts jobs a worker could not run back at the front, in order. */
  requeue(jobs: Job[]): void {
    this.jobs.unshift(...jobs.filter((j) => !j.settled));
    this.pump();
  }

  /** Nothing to do: any worker may take any job. */
  release(): void {}

  /** Removes and returns every queued job. */
  drain(): Job[] {
    return this.jobs.splice(0);
  }

  private pump(): void {
    while (this.waiters.length > 0 && this.jobs.length > 0) {
      const head = this.waiters[0]!;
      while (head.batch.length < head.max && this.jobs.length > 0) {
        const job = this.jobs.shift()!;
        if (!job.settled) head.batch.push(job);
      }
      if (head.batch.length >= head.max || head.delayMs <= 0) {
        this.deliver(head);
        continue;
      }
      if (head.batch.length > 0 && !head.timer) {
        head.timer = setTimeout(() => this.deliver(head), head.delayMs);
      }
    }
  }

  private cancel(waiter: Waiter): void {
    const i = this.waiters.indexOf(waiter);
    if (i < 0) return;
    this.waiters.splice(i, 1);
    if (waiter.timer) clearTimeout(waiter.timer);
    waiter.resolve([]);
    this.requeue(waiter.batch);
  }

  private deliver(waiter: Waiter): void {
    if (waiter.timer) clearTimeout(waiter.timer);
    waiter.detach();
    const i = this.waiters.indexOf(waiter);
    if (i >= 0) this.waiters.splice(i, 1);
    waiter.resolve(waiter.batch);
    this.pump();
  }
}

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
import { WaitingWorkers } from './waiting-workers.js';

/** What a worker pool takes batches from: this FIFO, or a stateful model's SequenceQueue. */
export interface BatchQueue {
  readonly size: number;
  readonly remainingCapacity: number;
  /** A worker waits for work and would take a job offered now (useJobTicket's test). */
  readonly workerIdle: boolean;
  /** False when the job cannot be queued: the caller answers 503. A job `alone` gets a batch of its own. */
  offer(job: Job): boolean;
  /** Takes a job out of the queue (its client timed out); false when no longer queued. */
  remove(job: Job): boolean;
  /** A batch for the worker slot `owner` (a stateful model's sequences stay with their slot). */
  poll(max: number, delayMs: number, signal?: AbortSignal, owner?: object): Promise<Job[]>;
  takeFullBatch(max: number): Job[];
  requeue(jobs: Job[]): void;
  /** The worker slot `owner` is gone. */
  release(owner: object): void;
  drain(): Job[];
}

export class JobQueue implements BatchQueue {
  readonly capacity: number;
  private jobs: Job[] = [];
  private readonly waiters = new WaitingWorkers((batch) => this.requeue(batch), () => this.pump());

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get size(): number {
    return this.jobs.length;
  }

  get remainingCapacity(): number {
    return Math.max(0, this.capacity - this.jobs.length);
  }

  /** Only the head waiter collects, and it leaves once its batch is full: it always has room. */
  get workerIdle(): boolean {
    return this.jobs.length === 0 && this.waiters.all.length > 0;
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
    const batch = this.waiters.wait(max, delayMs, signal, undefined);
    this.pump();
    return batch;
  }

  /**
   * A full batch at once for a worker still busy with another, so that the next batch is already
   * in the worker when the current one ends; or none. Never while an idle worker waits (it comes
   * first), never a partial batch (it would have grown meanwhile).
   */
  takeFullBatch(max: number): Job[] {
    if (this.waiters.all.length > 0 || this.jobs.length < max || this.jobs.slice(0, max).some((j) => j.alone)) return [];
    return this.jobs.splice(0, max).filter((j) => !j.settled);
  }

  remove(job: Job): boolean {
    const i = this.jobs.indexOf(job);
    if (i >= 0) this.jobs.splice(i, 1);
    return i >= 0;
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

  /**
   * Only the waiter at the head collects; when its batch leaves, the next one is the head. A job
   * that goes alone sends the batch so far on its way, and leaves alone with the next waiter.
   */
  private pump(): void {
    const head = this.waiters.all[0];
    if (!head) return;
    let alone = false;
    while (!alone && head.batch.length < head.max && this.jobs.length > 0) {
      alone = this.jobs[0]!.alone;
      if (alone && head.batch.length > 0) break;
      const job = this.jobs.shift()!;
      if (job.settled) alone = false;
      else head.batch.push(job);
    }
    // Leaving, it pumps again for the next waiter.
    this.waiters.ripen(head, alone);
  }
}

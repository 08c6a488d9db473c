/**
 * @module batching/job-queue
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
import { type BatchDelay, nodeTimer, type StartTimer, WaitingWorkers } from './waiting-workers.js';

/** What a worker pool takes batches from: this FIFO, or a stateful model's SequenceQueue. */
export interface BatchQueue {
  readonly size: number;
  /** Of `size`, the clients' jobs: the server's own (quiet, the front end's warm-up) are no load to follow. */
  readonly load: number;
  readonly remainingCapacity: number;
  /** No job at all could be queued now (a stateful model's queue decides per sequence: never). */
  readonly full: boolean;
  /** A worker waits for work and would take a job enqueued now (useJobTicket's test). */
  readonly workerIdle: boolean;
  /** Workers hold what the queue gave them past a batch (a stateful model's sequences): the scaler stops none. */
  readonly keepsWorkers: boolean;
  /** False when the job cannot be queued: the caller answers 503. A job `alone` gets a batch of its own. */
  enqueue(job: Job): boolean;
  /** Takes a job out of the queue (its client timed out); false when no longer queued. */
  remove(job: Job): boolean;
  /** A batch for the worker slot `owner` (a stateful model's sequences stay with their slot). */
  poll(max: number, delay: BatchDelay, signal?: AbortSignal, owner?: object): Promise<Job[]>;
  /** A full batch for a busy worker, none of whose jobs' deadlines is within `timeLeftMs`; or none. */
  takeFullBatch(max: number, timeLeftMs: number, leave?: number): Job[];
  /**
   * Settles at the next job enqueued, for a busy worker to look for a full batch again; undefined
   * when this queue never gives one early (takeFullBatch is always empty).
   */
  nextEnqueue(): Promise<void> | undefined;
  requeue(jobs: Job[]): void;
  /** The worker slot `owner` is gone. */
  release(owner: object): void;
  drain(): Job[];
}

export class JobQueue implements BatchQueue {
  readonly capacity: number;
  readonly keepsWorkers = false;
  private jobs: Job[] = [];
  private readonly waiters: WaitingWorkers;
  private nextEnqueued: { promise: Promise<void>; resolve: () => void } | undefined;
  /**
   * What takeFullBatch gave out, until answered: a batch ahead still waits, in a worker's pipe, so
   * it shows in pendingRequests; it has left the queue, as a batch a TorchServe worker took has,
   * so it does not count against job_queue_size. Counted, it capped the work the workers could
   * hold at 100 jobs (25 ms of mnist's): past capacity, one turn of the front end's event loop,
   * busy reading and refusing, outlasted it and the workers idled while the queue refused
   * (docs/performance.md, "Batches ahead outside the queue").
   */
  private readonly heldAhead = new Set<Job>();
  /** The server's own jobs (quiet) enqueued and not yet answered: while there are none, `load` is `size`. */
  private quietUnanswered = 0;

  /** `startTimer`: the maxBatchDelay clock; Node's timers unless a test moves its own. */
  constructor(capacity: number, startTimer: StartTimer = nodeTimer) {
    this.capacity = capacity;
    this.waiters = new WaitingWorkers(
      (batch) => this.requeue(batch),
      () => this.pump(),
      startTimer,
    );
  }

  /** Jobs waiting: in the queue, or taken ahead by a busy worker and not yet answered. */
  get size(): number {
    return this.jobs.length + this.heldAhead.size;
  }

  /** Counted job by job only while some of the server's own may wait: a scaler's tick reads it, at most every 10 ms. */
  get load(): number {
    if (this.quietUnanswered === 0) return this.size;
    let clients = 0;
    for (const job of this.jobs) if (!job.quiet) clients++;
    for (const job of this.heldAhead) if (!job.quiet) clients++;
    return clients;
  }

  /** Room left in the queue itself (job_queue_size). */
  get remainingCapacity(): number {
    return Math.max(0, this.capacity - this.jobs.length);
  }

  get full(): boolean {
    return this.jobs.length >= this.capacity;
  }

  /** Only the head waiter collects, and it leaves once its batch is full: it always has room. */
  get workerIdle(): boolean {
    return this.jobs.length === 0 && this.waiters.all.length > 0;
  }

  /** False when the queue is full. */
  enqueue(job: Job): boolean {
    if (this.full) return false;
    this.jobs.push(job);
    if (job.quiet) this.countQuiet(job);
    this.pump();
    const next = this.nextEnqueued;
    this.nextEnqueued = undefined;
    next?.resolve();
    return true;
  }

  private countQuiet(job: Job): void {
    this.quietUnanswered++;
    void job.done.then(() => this.quietUnanswered--);
  }

  nextEnqueue(): Promise<void> {
    if (!this.nextEnqueued) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.nextEnqueued = { promise, resolve };
    }
    return this.nextEnqueued.promise;
  }

  /**
   * Resolves with 1..max jobs, following the batching rule above, or with none when `signal`
   * aborts (the worker is going away); jobs it was holding go back to the front of the queue.
   */
  poll(max: number, delay: BatchDelay, signal?: AbortSignal): Promise<Job[]> {
    const batch = this.waiters.wait(max, delay, signal, undefined);
    this.pump();
    return batch;
  }

  /**
   * A full batch at once for a worker still busy with another, so that the next batch is already
   * in the worker when the current one ends; or none. Never while an idle worker waits (it comes
   * first), never a partial batch (it would have grown meanwhile), and only with `leave` full
   * batches more behind it (for other busy workers, which may be free first).
   */
  takeFullBatch(max: number, timeLeftMs: number, leave = 0): Job[] {
    if (this.waiters.all.length > 0 || this.jobs.length < max * (leave + 1)) return [];
    const soonest = performance.now() + timeLeftMs;
    if (this.jobs.slice(0, max).some((j) => j.alone || (j.deadline !== undefined && j.deadline < soonest))) return [];
    const batch = this.jobs.splice(0, max).filter((j) => !j.settled);
    for (const job of batch) {
      this.heldAhead.add(job);
      void job.done.then(() => this.heldAhead.delete(job));
    }
    return batch;
  }

  remove(job: Job): boolean {
    const i = this.jobs.indexOf(job);
    if (i >= 0) this.jobs.splice(i, 1);
    return i >= 0;
  }

  /** Puts jobs a worker could not run back at the front, in order. */
  requeue(jobs: Job[]): void {
    for (const job of jobs) {
      this.heldAhead.delete(job);
      job.dequeuedAt = undefined;
    }
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

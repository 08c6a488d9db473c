/**
 * @module batching/sequence-queue
 * The queue of a stateful model (`sequenceBatching: true`), as TorchServe's sequence batching:
 * a request without a sequence id starts a sequence (the server names it `ts-seq-<uuid>`, marks
 * the request as its start, and tells the client the id in the answer's headers); a client
 * continues it by sending that id; a request marked as the end closes it once taken. The handler
 * keeps each sequence's state in its worker, so:
 *
 * - a sequence stays with the worker slot that took its first request (after a crash, the slot's
 *   replacement; after a scale-down, any worker);
 * - a batch holds at most one request of each sequence, and a sequence's requests run in order.
 *
 * A request answered "not run, send it again" (its batch refused, or its wait past its deadline)
 * gives its start and end back: the sequence's next request taken is marked as its start, and an
 * end that closed it opens it again, so that the request sent again is what it was.
 *
 * Refused (the caller answers 503): a new sequence beyond maxNumSequence, an id that is unknown,
 * closed or expired, a sequence with maxSequenceJobQueueSize requests already waiting.
 */
import { randomUUID } from 'node:crypto';
import type { SequenceSettings } from '../config/model-config.js';
import type { Job } from './job.js';
import type { BatchQueue } from './job-queue.js';
import { type BatchDelay, WaitingWorkers, type Waiter } from './waiting-workers.js';

interface Sequence {
  readonly id: string;
  readonly jobs: Job[];
  readonly createdAt: number;
  lastActivity: number;
  /** The worker slot serving it. */
  owner: object | undefined;
  /** Its end request has been enqueued: it takes no more. */
  ending: boolean;
  /** Its next request taken is marked as its start: none has reached the handler as it yet, or the one that did was not run. */
  startOwed: boolean;
}

export class SequenceQueue implements BatchQueue {
  /** A sequence's state lives in the worker that serves it. */
  readonly keepsWorkers = true;
  private readonly settings: SequenceSettings;
  private readonly sequences = new Map<string, Sequence>();
  private readonly waiters = new WaitingWorkers((batch) => this.requeue(batch));
  /** Jobs `alone` (explanations, customized describes) stay outside the sequences: any worker takes them. */
  private readonly aloneJobs: Job[] = [];
  /** Each request's sequence, also once the sequence is closed: a request not run gives its end back to it. */
  private readonly sequenceOf = new WeakMap<Job, Sequence>();
  private queued = 0;
  /** Milliseconds since the epoch; a test gives a clock of its own. */
  private readonly now: () => number;

  constructor(settings: SequenceSettings, now: () => number = Date.now) {
    this.settings = settings;
    this.now = now;
  }

  get size(): number {
    return this.queued;
  }

  /** All of it: the front end's warm-up sends a stateful model nothing (server.ts). */
  get load(): number {
    return this.queued;
  }

  get remainingCapacity(): number {
    return Math.max(0, this.settings.maxNumSequence * this.settings.maxSequenceJobQueueSize - this.queued);
  }

  /** Each sequence has a queue of its own: whether a job fits is known only from its headers. */
  get full(): boolean {
    return false;
  }

  /** A waiting worker has room; whether it may take a given sequence is decided on enqueue. */
  get workerIdle(): boolean {
    return this.waiters.all.some((w) => w.batch.length < w.max);
  }

  /** False when the request cannot join a sequence (see the module's list). */
  enqueue(job: Job): boolean {
    if (job.alone) return this.enqueueAlone(job);
    const now = this.now();
    this.expire(now);
    const names = this.settings.headers;
    const headers = job.request.headers;
    const sequence = headers[names.id] === undefined ? this.open(headers, now) : this.sequences.get(headers[names.id]!);
    if (!sequence || sequence.ending || sequence.jobs.length >= this.settings.maxSequenceJobQueueSize) return false;
    job.responseHeaders[names.id] = sequence.id;
    if (isSet(headers[names.end])) sequence.ending = true;
    this.sequenceOf.set(job, sequence);
    job.onNotRun = this.giveBack;
    sequence.jobs.push(job);
    sequence.lastActivity = now;
    this.queued++;
    this.pump();
    return true;
  }

  /** A new sequence for a request that names none, unless maxNumSequence are open. */
  private open(headers: Record<string, string>, now: number): Sequence | undefined {
    if (this.sequences.size >= this.settings.maxNumSequence) return undefined;
    const id = `ts-seq-${randomUUID()}`;
    headers[this.settings.headers.id] = id;
    const sequence: Sequence = { id, jobs: [], createdAt: now, lastActivity: now, owner: undefined, ending: false, startOwed: true };
    this.sequences.set(id, sequence);
    return sequence;
  }

  /**
   * A request of a sequence failed unrun, and its client is asked to send it again (Job.onNotRun):
   * the start it carried is owed to the sequence's next request, and the end it carried is undone
   * (its sequence open again, unless past sequenceTimeoutMSec), for the request sent again to
   * start or end the sequence as this one would have (review-16 F4).
   */
  private readonly giveBack = (job: Job): void => {
    const sequence = this.sequenceOf.get(job);
    if (!sequence) return;
    const names = this.settings.headers;
    const now = this.now();
    if (isSet(job.request.headers[names.start])) sequence.startOwed = true;
    if (isSet(job.request.headers[names.end])) {
      sequence.ending = this.timedOut(sequence, now);
      if (!sequence.ending) this.sequences.set(sequence.id, sequence);
    }
    sequence.lastActivity = now;
  };

  private enqueueAlone(job: Job): boolean {
    if (this.remainingCapacity === 0) return false;
    this.aloneJobs.push(job);
    this.queued++;
    this.pump();
    return true;
  }

  /** Closes sequences idle past sequenceMaxIdleMSec; stops those older than sequenceTimeoutMSec. */
  private expire(now: number): void {
    const idle = this.settings.sequenceMaxIdleMSec;
    for (const s of this.sequences.values()) {
      if (this.timedOut(s, now)) s.ending = true;
      const idleTooLong = idle > 0 && now - s.lastActivity > idle;
      if (s.jobs.length === 0 && (idleTooLong || s.ending)) this.sequences.delete(s.id);
    }
  }

  /** Older than sequenceTimeoutMSec. */
  private timedOut(sequence: Sequence, now: number): boolean {
    const timeout = this.settings.sequenceTimeoutMSec;
    return timeout > 0 && now - sequence.createdAt > timeout;
  }

  poll(max: number, delay: BatchDelay, signal?: AbortSignal, owner?: object): Promise<Job[]> {
    const batch = this.waiters.wait(max, delay, signal, owner);
    this.pump();
    return batch;
  }

  remove(job: Job): boolean {
    const jobs = job.alone ? this.aloneJobs : (this.sequenceOf.get(job)?.jobs ?? []);
    const i = jobs.indexOf(job);
    if (i < 0) return false;
    jobs.splice(i, 1);
    this.queued--;
    return true;
  }

  /** No batch ahead of time: a worker's next batch depends on which sequences it serves. */
  takeFullBatch(): Job[] {
    return [];
  }

  nextEnqueue(): undefined {
    return undefined;
  }

  /** Jobs a worker could not run go back to the front of their sequences, in order. */
  requeue(jobs: Job[]): void {
    for (const job of [...jobs].reverse()) {
      if (job.settled) continue;
      if (job.alone) {
        this.aloneJobs.unshift(job);
        this.queued++;
        continue;
      }
      const sequence = this.sequenceOf.get(job)!;
      if (!this.sequences.has(sequence.id)) {
        // Its end request had closed it; it lives on for that request, on any worker.
        sequence.owner = undefined;
        this.sequences.set(sequence.id, sequence);
      }
      sequence.jobs.unshift(job);
      this.queued++;
    }
    this.pump();
  }

  /** A worker slot is gone: its sequences may go to any worker. */
  release(owner: object): void {
    for (const s of this.sequences.values()) if (s.owner === owner) s.owner = undefined;
    this.pump();
  }

  drain(): Job[] {
    const jobs = [...this.aloneJobs.splice(0), ...[...this.sequences.values()].flatMap((s) => s.jobs)];
    this.sequences.clear();
    this.queued = 0;
    return jobs;
  }

  /**
   * Every waiter collects, oldest first: each may serve sequences the others may not. A job that
   * goes alone takes the first waiter with nothing collected yet.
   */
  private pump(): void {
    for (const waiter of [...this.waiters.all]) {
      if (waiter.batch.length === 0 && this.takeAlone(waiter)) continue;
      this.fill(waiter);
      this.waiters.ripen(waiter);
    }
  }

  private takeAlone(waiter: Waiter): boolean {
    let job: Job | undefined;
    while ((job = this.aloneJobs.shift()) !== undefined) {
      this.queued--;
      if (job.settled) continue;
      waiter.batch.push(job);
      return this.waiters.ripen(waiter, true);
    }
    return false;
  }

  /** Adds to the waiter's batch the oldest request of each sequence it may serve and has not yet. */
  private fill(waiter: Waiter): void {
    const taken = new Set(waiter.batch.map((job) => job.request.headers[this.settings.headers.id]));
    const ready = [...this.sequences.values()]
      .filter((s) => s.jobs.length > 0 && !taken.has(s.id) && (s.owner === undefined || s.owner === waiter.owner))
      .sort((a, b) => a.jobs[0]!.arrivedAt - b.jobs[0]!.arrivedAt);
    for (const sequence of ready) {
      if (waiter.batch.length >= waiter.max) return;
      const job = sequence.jobs.shift()!;
      this.queued--;
      if (sequence.ending && sequence.jobs.length === 0) this.sequences.delete(sequence.id);
      if (job.settled) continue;
      sequence.owner = waiter.owner;
      if (sequence.startOwed) {
        job.request.headers[this.settings.headers.start] = 'true';
        sequence.startOwed = false;
      }
      waiter.batch.push(job);
    }
  }
}

/** A sequence header's value that sets its flag. */
function isSet(value: string | undefined): boolean {
  return value?.toLowerCase() === 'true';
}

/**
 * @module batching/sequence-queue
 * The queue of a stateful model (`sequenceBatching: true`), as TorchServe's sequence batching:
 * a request without a sequence id starts a sequence (the server names it `ts-seq-<uuid>`, marks
 * the request as its start, and tells the client the id in the answer's headers); a client
 * continues it by sending that id; a request marked as the end closes it: it takes no more
 * requests once the end is enqueued, and its place is free once the end is answered. The handler
 * keeps each sequence's state in its worker, so:
 *
 * - a sequence stays with the worker slot that took its first request (its process gone, crashed
 *   or scaled down, any worker, where its state starts over);
 * - a batch holds at most one request of each sequence, and a sequence's requests run in order.
 *
 * A request answered "not run, send it again" (its batch refused, or its wait past its deadline)
 * is sent again as it was: a sequence it opened is closed (its answer names none, and the request
 * sent again opens one anew); a start it carried goes to the sequence's next request; an end it
 * carried is undone, the sequence open for END_AGAIN_MS more. A sequence no client knows (its
 * opener's client went away before the answer that named it) is closed too. A sequence is idle
 * from its last answer, not its last request: one that runs long is not idle.
 *
 * Refused (the caller answers 503): a new sequence beyond maxNumSequence, an id that is unknown,
 * closed or expired, a sequence with maxSequenceJobQueueSize requests already waiting.
 */
import { randomUUID } from 'node:crypto';
import type { SequenceSettings } from '../config/model-config.js';
import type { AnswerKind, Job } from './job.js';
import type { BatchQueue } from './job-queue.js';
import { type BatchDelay, WaitingWorkers, type Waiter } from './waiting-workers.js';

/**
 * How long a sequence whose end was not run stays open for its end to be sent again: with
 * sequenceMaxIdleMSec 0 (never idle) a client that gave up on it would hold its place for good.
 */
export const END_AGAIN_MS = 60_000;

interface Sequence {
  readonly id: string;
  /** Its requests waiting, in order. */
  readonly jobs: Job[];
  /** Its request a worker holds (taken, not yet answered). */
  readonly running: Set<Job>;
  readonly createdAt: number;
  /** Its last request's arrival or answer. */
  lastActivity: number;
  /** The worker slot serving it. */
  owner: object | undefined;
  /** It takes no more: its end request has been enqueued, or it is older than sequenceTimeoutMSec. */
  ending: boolean;
  /** Its next request taken is marked as its start: none has reached the handler as it yet, or the one that did was not run. */
  startOwed: boolean;
  /** The request the server marked as its start, until it is answered. */
  startedBy: Job | undefined;
  /**
   * An answer naming it went to a client: a sequence whose first request was not run, or whose
   * client went away before its answer, is known to no client, and is closed.
   */
  named: boolean;
  /** Its end was not run: it closes if no request comes by then (END_AGAIN_MS). */
  endAwaitedUntil: number | undefined;
}

export class SequenceQueue implements BatchQueue {
  /** A sequence's state lives in the worker that serves it. */
  readonly keepsWorkers = true;
  private readonly settings: SequenceSettings;
  private readonly sequences = new Map<string, Sequence>();
  private readonly waiters = new WaitingWorkers((batch) => this.requeue(batch));
  /** Jobs `alone` (explanations, customized describes) stay outside the sequences: any worker takes them. */
  private readonly aloneJobs: Job[] = [];
  /** Each request's sequence: its answers tell the sequence (answered). */
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
    job.onAnswer = this.answered;
    sequence.jobs.push(job);
    sequence.lastActivity = now;
    sequence.endAwaitedUntil = undefined;
    this.queued++;
    this.pump();
    return true;
  }

  /** A new sequence for a request that names none, unless maxNumSequence are open. */
  private open(headers: Record<string, string>, now: number): Sequence | undefined {
    if (this.sequences.size >= this.settings.maxNumSequence) return undefined;
    const id = `ts-seq-${randomUUID()}`;
    headers[this.settings.headers.id] = id;
    const sequence: Sequence = {
      id,
      jobs: [],
      running: new Set(),
      createdAt: now,
      lastActivity: now,
      owner: undefined,
      ending: false,
      startOwed: true,
      startedBy: undefined,
      named: false,
      endAwaitedUntil: undefined,
    };
    this.sequences.set(id, sequence);
    return sequence;
  }

  /**
   * An answer of a request of a sequence goes out (Job.onAnswer): one that reaches its client
   * names the sequence to it; a final one leaves the sequence idle from now, and closes it when it
   * ended (its place held until then), or when no client knows it.
   */
  private readonly answered = (job: Job, answer: AnswerKind): void => {
    const sequence = this.sequenceOf.get(job)!;
    const reachesClient = job.clientGone?.() !== true;
    if (answer === 'part') {
      // A streamed answer's first part names the sequence (its head carries the id).
      if (reachesClient) sequence.named = true;
      return;
    }
    const now = this.now();
    sequence.running.delete(job);
    sequence.lastActivity = now;
    if (answer === 'not-run') this.giveBack(job, sequence, now);
    else if (reachesClient) sequence.named = true;
    if (sequence.startedBy === job) sequence.startedBy = undefined;
    if (sequence.jobs.length > 0 || sequence.running.size > 0) return;
    if (!sequence.named) this.closeUnnamed(sequence, job);
    else if (sequence.ending) this.sequences.delete(sequence.id);
  };

  /**
   * Closes a sequence no client knows (review-17 F4): its answer, if it still goes out, names
   * none. Kept, it held a place for good (sequenceMaxIdleMSec 0): its opener's client, told
   * "not run, send it again", sent it again without the id, as a TorchServe client would, or was
   * gone (a gRPC deadline, a closed connection) before the answer that would have named it.
   */
  private closeUnnamed(sequence: Sequence, job: Job): void {
    this.sequences.delete(sequence.id);
    delete job.responseHeaders[this.settings.headers.id];
  }

  /**
   * A request of a sequence failed unrun, and its client is asked to send it again, as it was
   * (review-16 F4, review-17 F3, F7): a start the server marked on it goes to the sequence's next
   * request; an end it carried is undone, the sequence open again (unless past
   * sequenceTimeoutMSec) for END_AGAIN_MS at most. (A sequence it opened is closed: closeUnnamed.)
   */
  private giveBack(job: Job, sequence: Sequence, now: number): void {
    if (sequence.startedBy === job) sequence.startOwed = true;
    if (!sequence.named || !isSet(job.request.headers[this.settings.headers.end]) || this.timedOut(sequence, now)) return;
    sequence.ending = false;
    sequence.endAwaitedUntil = now + END_AGAIN_MS;
  }

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
      const idleTooLong = (idle > 0 && now - s.lastActivity > idle) || (s.endAwaitedUntil !== undefined && now > s.endAwaitedUntil);
      if (s.jobs.length === 0 && s.running.size === 0 && (idleTooLong || s.ending)) this.sequences.delete(s.id);
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
      sequence.running.delete(job);
      sequence.jobs.unshift(job);
      this.queued++;
    }
    this.pump();
  }

  /**
   * A worker slot's process is gone (scaled down, or crashed): its sequences' state went with it.
   * They may go to any worker, where it starts over: their next request is marked as the start.
   */
  release(owner: object): void {
    for (const s of this.sequences.values()) {
      if (s.owner !== owner) continue;
      s.owner = undefined;
      s.startOwed = true;
    }
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
    // A request answered while its batch forms (its wait past its deadline) leaves room for its sequence's next.
    const taken = new Set(waiter.batch.filter((job) => !job.settled).map((job) => job.request.headers[this.settings.headers.id]));
    const ready = [...this.sequences.values()]
      .filter((s) => s.jobs.length > 0 && !taken.has(s.id) && (s.owner === undefined || s.owner === waiter.owner))
      .sort((a, b) => a.jobs[0]!.arrivedAt - b.jobs[0]!.arrivedAt);
    for (const sequence of ready) {
      if (waiter.batch.length >= waiter.max) return;
      const job = sequence.jobs.shift()!;
      this.queued--;
      if (job.settled) continue;
      sequence.owner = waiter.owner;
      if (sequence.startOwed) {
        job.request.headers[this.settings.headers.start] = 'true';
        sequence.startOwed = false;
        sequence.startedBy = job;
      }
      sequence.running.add(job);
      waiter.batch.push(job);
    }
  }
}

/** A sequence header's value that sets its flag. */
function isSet(value: string | undefined): boolean {
  return value?.toLowerCase() === 'true';
}

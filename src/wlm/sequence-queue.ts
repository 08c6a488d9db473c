/**
 * @module wlm/sequence-queue
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
 * Refused (the caller answers 503): a new sequence beyond maxNumSequence, an id that is unknown,
 * closed or expired, a sequence with maxSequenceJobQueueSize requests already waiting.
 */
import { randomUUID } from 'node:crypto';
import type { SequenceSettings } from '../config/model-config.js';
import type { Job } from './job.js';
import type { BatchQueue } from './job-queue.js';

interface Sequence {
  readonly id: string;
  readonly jobs: Job[];
  readonly createdAt: number;
  lastActivity: number;
  /** The worker slot serving it. */
  owner: object | undefined;
  /** Its end request has been accepted: it takes no more. */
  ending: boolean;
}

interface Waiter {
  readonly owner: object | undefined;
  readonly max: number;
  readonly delayMs: number;
  readonly resolve: (jobs: Job[]) => void;
  readonly detach: () => void;
  readonly batch: Job[];
  readonly taken: Set<Sequence>;
  timer: NodeJS.Timeout | undefined;
}

export class SequenceQueue implements BatchQueue {
  private readonly settings: SequenceSettings;
  private readonly sequences = new Map<string, Sequence>();
  private waiters: Waiter[] = [];
  private queued = 0;

  constructor(settings: SequenceSettings) {
    this.settings = settings;
  }

  get size(): number {
    return this.queued;
  }

  get remainingCapacity(): number {
    return Math.max(0, this.settings.maxNumSequence * this.settings.maxSequenceJobQueueSize - this.queued);
  }

  /** False when the request cannot join a sequence (see the module's list). */
  offer(job: Job): boolean {
    const now = Date.now();
    this.expire(now);
    const names = this.settings.headers;
    const headers = job.request.headers;
    const sequence = headers[names.id] === undefined ? this.open(headers, now) : this.sequences.get(headers[names.id]!);
    if (!sequence || sequence.ending || sequence.jobs.length >= this.settings.maxSequenceJobQueueSize) return false;
    job.responseHeaders[names.id] = sequence.id;
    if (headers[names.end]?.toLowerCase() === 'true') sequence.ending = true;
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
    headers[this.settings.headers.start] = 'true';
    const sequence: Sequence = { id, jobs: [], createdAt: now, lastActivity: now, owner: undefined, ending: false };
    this.sequences.set(id, sequence);
    return sequence;
  }

  /** Closes sequences idle past sequenceMaxIdleMSec; stops those older than sequenceTimeoutMSec. */
  private expire(now: number): void {
    const { sequenceMaxIdleMSec: idle, sequenceTimeoutMSec: timeout } = this.settings;
    for (const s of this.sequences.values()) {
      if (timeout > 0 && now - s.createdAt > timeout) s.ending = true;
      const idleTooLong = idle > 0 && now - s.lastActivity > idle;
      if (s.jobs.length === 0 && (idleTooLong || s.ending)) this.sequences.delete(s.id);
    }
  }

  poll(max: number, delayMs: number, signal?: AbortSignal, owner?: object): Promise<Job[]> {
    if (signal?.aborted) return Promise.resolve([]);
    return new Promise((resolve) => {
      const onAbort = (): void => this.cancel(waiter);
      const detach = (): void => signal?.removeEventListener('abort', onAbort);
      const waiter: Waiter = { owner, max: Math.max(1, max), delayMs, resolve, detach, batch: [], taken: new Set(), timer: undefined };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pump();
    });
  }

  /** No batch ahead of time: a worker's next batch depends on which sequences it serves. */
  takeFullBatch(): Job[] {
    return [];
  }

  /** Jobs a worker could not run go back to the front of their sequences, in order. */
  requeue(jobs: Job[]): void {
    for (const job of [...jobs].reverse()) {
      if (job.settled) continue;
      const id = job.request.headers[this.settings.headers.id]!;
      let sequence = this.sequences.get(id);
      if (!sequence) {
        // Its end request had closed it; it lives on for that request.
        sequence = { id, jobs: [], createdAt: Date.now(), lastActivity: Date.now(), owner: undefined, ending: true };
        this.sequences.set(id, sequence);
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
    const jobs = [...this.sequences.values()].flatMap((s) => s.jobs);
    this.sequences.clear();
    this.queued = 0;
    return jobs;
  }

  private pump(): void {
    for (const waiter of [...this.waiters]) {
      this.fill(waiter);
      if (waiter.batch.length === 0) continue;
      if (waiter.batch.length >= waiter.max || waiter.delayMs <= 0) this.deliver(waiter);
      else waiter.timer ??= setTimeout(() => this.deliver(waiter), waiter.delayMs);
    }
  }

  /** Adds to the waiter's batch the oldest request of each sequence it may serve and has not yet. */
  private fill(waiter: Waiter): void {
    const ready = [...this.sequences.values()]
      .filter((s) => s.jobs.length > 0 && !waiter.taken.has(s) && (s.owner === undefined || s.owner === waiter.owner))
      .sort((a, b) => a.jobs[0]!.arrivedAt - b.jobs[0]!.arrivedAt);
    for (const sequence of ready) {
      if (waiter.batch.length >= waiter.max) return;
      const job = sequence.jobs.shift()!;
      this.queued--;
      waiter.taken.add(sequence);
      if (sequence.ending && sequence.jobs.length === 0) this.sequences.delete(sequence.id);
      if (job.settled) continue;
      sequence.owner = waiter.owner;
      waiter.batch.push(job);
    }
  }

  private cancel(waiter: Waiter): void {
    if (!this.remove(waiter)) return;
    waiter.resolve([]);
    this.requeue(waiter.batch);
  }

  private deliver(waiter: Waiter): void {
    if (!this.remove(waiter)) return;
    waiter.detach();
    waiter.resolve(waiter.batch);
  }

  private remove(waiter: Waiter): boolean {
    const i = this.waiters.indexOf(waiter);
    if (i < 0) return false;
    this.waiters.splice(i, 1);
    if (waiter.timer) clearTimeout(waiter.timer);
    return true;
  }
}

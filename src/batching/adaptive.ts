/**
 * @module batching/adaptive
 * Batching that tunes itself, for a model with no batch_size (a built-in handler, or a handler
 * whose model-config.yaml says `batching: adaptive`): the largest batch and the wait for one more
 * request are chosen from measured execution times instead of numbers a user must guess.
 *
 *   each batch run ──▶ ExecutionFit: time ≈ fixedMs + perItemMs × size, through each size's recent floor
 *   each arrival   ──▶ ArrivalGaps: the expected time to the next request
 *   a worker asks  ──▶ largest(): builtin_handler_batch_size, or the model's batch dimension if
 *                      smaller; a worker takes what is queued up to that many at once, so
 *                      batches grow with a backlog and are single requests without one
 *   a batch forms  ──▶ waitMs(): wait for one more only while that is cheaper than sending now,
 *                      never past latencyTargetMs for the oldest request, counting its run, and
 *                      never for less than a timer can time (1 ms)
 *
 * The wait rule. A worker holds k requests and may send them now, or wait Δ for a (k+1)th. Sent
 * now, the k finish after t(k) and the next one, arriving at Δ, after max(Δ, t(k)) + t(1); waited,
 * all k+1 finish at Δ + t(k+1). The k+1 latencies sum to less by waiting only when
 * (k+1)·Δ < fixedMs - k·perItemMs: one more request is worth waiting for when it is expected
 * within that window (the batch's fixed cost, less what the k already waiting lose) and the
 * latency target still holds. So a model whose time is mostly per request (a CPU convnet) never
 * waits, one with a large fixed cost (a GPU, a remote call) waits a little under load, and no
 * model waits at low load (the next request is further off than any window) or while another
 * worker idles (it takes the next request at once). This is the shape of BentoML's CORK
 * dispatcher (a regression of batch time on size; send when waiting costs more than it gains,
 * within a latency bound), derived here for one worker's queue.
 */
import type { AdaptiveLimits } from '../config/model-config.js';
import type { Job } from './job.js';

/** How far a size's floor rises toward a slower batch, each batch: about 50 batches follow a model that became slower. */
const FLOOR_RISE = 0.05;
/** How much of the arrival gap's average each new gap leaves. */
const GAP_MEMORY = 0.8;
/**
 * The shortest wait worth starting: Node's timers fire 1 ms at the soonest, so a shorter window
 * would wait a whole millisecond, restarted with each request that joins, while the worker idles.
 * In an open loop at 0.7x mnist's capacity, the server reading requests in bursts (gaps of ~0)
 * made windows of 0.02-0.1 ms pay on paper: p50 went from 3.4 ms to 25-28 ms
 * (bench/results/20261206-1948-adaptive-batching.json).
 */
const SHORTEST_WAIT_MS = 1;
/** How much of the mean batch size describe shows each new batch leaves. */
const MEAN_MEMORY = 0.95;

/** t(n) = fixedMs + perItemMs × n, both at least 0. */
export interface BatchTimeLine {
  readonly fixedMs: number;
  readonly perItemMs: number;
}

export function timeOf(line: BatchTimeLine, size: number): number {
  return line.fixedMs + line.perItemMs * size;
}

/**
 * A least-squares line through each batch size's floor: the least time a batch of that size took
 * lately (a faster batch lowers it at once, a slower one raises it FLOOR_RISE of the way). Floors,
 * not means: on a shared machine a batch's time only ever grows when the worker is preempted,
 * and a mean of such times gave mnist a fixed cost of 5 ms (its true one is ~0.1), which made
 * batches wait for nothing. Before two sizes have been seen the line goes through the origin: no
 * batching gain assumed.
 */
export class ExecutionFit {
  private readonly floors = new Map<number, number>();

  add(size: number, ms: number): void {
    if (!(size > 0) || !Number.isFinite(ms) || ms < 0) return;
    const floor = this.floors.get(size);
    this.floors.set(size, floor === undefined || ms < floor ? ms : floor + (ms - floor) * FLOOR_RISE);
  }

  /** The line; undefined before the first batch. */
  line(): BatchTimeLine | undefined {
    const n = this.floors.size;
    if (n === 0) return undefined;
    let sumX = 0;
    let sumY = 0;
    let sumXX = 0;
    let sumXY = 0;
    for (const [x, y] of this.floors) {
      sumX += x;
      sumY += y;
      sumXX += x * x;
      sumXY += x * y;
    }
    // One size only: the line through the origin and its floor.
    if (n === 1) return { fixedMs: 0, perItemMs: sumY / sumX };
    const slope = (n * sumXY - sumX * sumY) / (n * sumXX - sumX * sumX);
    const intercept = (sumY - slope * sumX) / n;
    // A noisy fit can come out with a negative part; each is a time, so at least 0.
    if (slope < 0) return { fixedMs: sumY / n, perItemMs: 0 };
    if (intercept < 0) return { fixedMs: 0, perItemMs: sumXY / sumXX };
    return { fixedMs: intercept, perItemMs: slope };
  }
}

/** The average gap between arrivals, and how long it has been since the last one. */
export class ArrivalGaps {
  private last: number | undefined;
  private meanGap: number | undefined;

  arrived(now: number): void {
    if (this.last !== undefined) {
      const gap = now - this.last;
      this.meanGap = this.meanGap === undefined ? gap : this.meanGap * GAP_MEMORY + gap * (1 - GAP_MEMORY);
    }
    this.last = now;
  }

  /** The expected wait for the next arrival seen from `now`: a silence longer than the average counts. */
  expectedGap(now: number): number | undefined {
    if (this.meanGap === undefined || this.last === undefined) return undefined;
    return Math.max(this.meanGap, now - this.last);
  }
}

/** What describe says of a model's adaptive batching. */
export interface AdaptiveState {
  readonly policy: 'adaptive';
  readonly latencyTargetMs: number;
  /** The largest batch it chooses now. */
  readonly batchSize: number;
  /** The wait it chose last for a forming batch, ms (0: sent at once). */
  readonly waitMs: number;
  /** The recent batches' mean size. */
  readonly meanBatch: number;
  readonly fixedMs: number | null;
  readonly perItemMs: number | null;
}

export class AdaptiveBatching {
  private readonly limits: AdaptiveLimits;
  private readonly now: () => number;
  private readonly fit = new ExecutionFit();
  private readonly arrivals = new ArrivalGaps();
  private lastWaitMs = 0;
  private meanBatch = 1;
  /** The largest batch the model's sessions take (a fixed batch dimension); undefined: any. */
  private modelLimit: number | undefined;

  /** `now`: milliseconds, performance.now unless a test moves its own clock. */
  constructor(limits: AdaptiveLimits, now: () => number = () => performance.now()) {
    this.limits = limits;
    this.now = now;
  }

  /** A request was enqueued. */
  arrived(): void {
    this.arrivals.arrived(this.now());
  }

  /** A batch of `size` requests took the worker `workMs`. */
  ran(size: number, workMs: number): void {
    this.fit.add(size, workMs);
    this.meanBatch = this.meanBatch * MEAN_MEMORY + size * (1 - MEAN_MEMORY);
  }

  /** The model's workers said the most its sessions take at once (undefined: any). */
  set batchDimension(limit: number | undefined) {
    this.modelLimit = limit;
  }

  /**
   * The most requests a batch holds: the ceiling, or the model's batch dimension if smaller. Not
   * cut by the latency target: a batch this large forms only from a backlog, which waits in the
   * queue whatever the batch size, and larger batches clear it sooner (a ResNet-18 on a CPU runs
   * a third more requests a second in batches of 8 than of 1: docs/performance.md).
   */
  largest(): number {
    return Math.max(1, Math.min(this.limits.ceiling, this.modelLimit ?? Number.POSITIVE_INFINITY));
  }

  /**
   * How much longer a forming batch (`batch`, oldest first) should wait for one more request,
   * from now; 0: send it now. `idleBehind`: other workers waiting for work (they would take the
   * next request at once, so nobody gains by waiting). See the module header for the rule.
   */
  waitMs(batch: readonly Pick<Job, 'arrivedAt'>[], idleBehind: number): number {
    this.lastWaitMs = this.decideWait(batch, idleBehind);
    return this.lastWaitMs;
  }

  private decideWait(batch: readonly Pick<Job, 'arrivedAt'>[], idleBehind: number): number {
    const held = batch.length;
    const line = this.fit.line();
    if (held === 0 || idleBehind > 0 || !line || held >= this.largest()) return 0;
    const window = (line.fixedMs - held * line.perItemMs) / (held + 1);
    const now = this.now();
    const gap = this.arrivals.expectedGap(now);
    if (window <= 0 || gap === undefined || gap >= window) return 0;
    const waited = now - batch[0]!.arrivedAt;
    let room = this.limits.latencyTargetMs - waited - timeOf(line, held + 1);
    if (this.limits.maxWaitMs !== undefined) room = Math.min(room, this.limits.maxWaitMs - waited);
    const wait = Math.min(window, room);
    return wait >= SHORTEST_WAIT_MS ? wait : 0;
  }

  state(): AdaptiveState {
    const line = this.fit.line();
    return {
      policy: 'adaptive',
      latencyTargetMs: this.limits.latencyTargetMs,
      batchSize: this.largest(),
      waitMs: round2(this.lastWaitMs),
      meanBatch: round2(this.meanBatch),
      fixedMs: line ? round2(line.fixedMs) : null,
      perItemMs: line ? round2(line.perItemMs) : null,
    };
  }
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/**
 * @module batching/adaptive
 * Batching that tunes itself, for a model with no batch_size (a built-in handler, or a handler
 * whose model-config.yaml says `batching: adaptive`): the largest batch and the wait for one more
 * request are chosen from measured execution times instead of numbers a user must guess.
 *
 *   each batch run ──▶ ExecutionFit: time ≈ fixedMs + perItemMs × size, recent batches weigh most
 *   each arrival   ──▶ ArrivalGaps: the expected time to the next request
 *   a worker asks  ──▶ largest(): builtin_handler_batch_size, or the model's batch dimension if
 *                      smaller; a worker takes what is queued up to that many at once, so
 *                      batches grow with a backlog and are single requests without one
 *   a batch forms  ──▶ waitMs(): wait for one more only while that is cheaper than sending now,
 *                      and never past latencyTargetMs for the oldest request, counting its run
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

/** How much of the fit each new batch leaves to the batches before it (about the last 20 count). */
const FIT_MEMORY = 0.95;
/** How much of the arrival gap's average each new gap leaves. */
const GAP_MEMORY = 0.8;

/** t(n) = fixedMs + perItemMs × n, both at least 0. */
export interface BatchTimeLine {
  readonly fixedMs: number;
  readonly perItemMs: number;
}

export function timeOf(line: BatchTimeLine, size: number): number {
  return line.fixedMs + line.perItemMs * size;
}

/**
 * A least-squares line through (size, ms) of the batches run, each older batch weighing
 * FIT_MEMORY less, so that it follows a model whose speed changes (threads, the machine's load).
 * Before two sizes have been seen the line goes through the origin: no batching gain assumed.
 */
export class ExecutionFit {
  private weight = 0;
  private sumX = 0;
  private sumY = 0;
  private sumXX = 0;
  private sumXY = 0;

  add(size: number, ms: number): void {
    if (!(size > 0) || !Number.isFinite(ms) || ms < 0) return;
    this.weight = this.weight * FIT_MEMORY + 1;
    this.sumX = this.sumX * FIT_MEMORY + size;
    this.sumY = this.sumY * FIT_MEMORY + ms;
    this.sumXX = this.sumXX * FIT_MEMORY + size * size;
    this.sumXY = this.sumXY * FIT_MEMORY + size * ms;
  }

  /** The line; undefined before the first batch. */
  line(): BatchTimeLine | undefined {
    if (this.weight === 0) return undefined;
    const spread = this.weight * this.sumXX - this.sumX * this.sumX;
    // One size only (relative spread ~0): the line through the origin and the mean.
    if (spread <= 1e-9 * this.weight * this.sumXX) return { fixedMs: 0, perItemMs: this.sumY / this.sumX };
    const slope = (this.weight * this.sumXY - this.sumX * this.sumY) / spread;
    const intercept = (this.sumY - slope * this.sumX) / this.weight;
    // A noisy fit can come out with a negative part; each is a time, so at least 0.
    if (slope < 0) return { fixedMs: this.sumY / this.weight, perItemMs: 0 };
    if (intercept < 0) return { fixedMs: 0, perItemMs: this.sumXY / this.sumXX };
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
    this.meanBatch = this.meanBatch * FIT_MEMORY + size * (1 - FIT_MEMORY);
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
    return Math.max(0, Math.min(window, room));
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

/**
 * @module batching/adaptive
 * Batching that tunes itself, for a model with no batch_size (a built-in handler, or a handler
 * whose model-config.yaml says `batching: adaptive`): the largest batch and the wait for one more
 * request are chosen from measured execution times instead of numbers a user must guess.
 *
 *   each batch      ──▶ ExecutionFit: time ≈ fixedMs + perItemMs × size, through each size's recent
 *                       floor, of the worker's time and the front end's on the batch
 *   each arrival    ──▶ ArrivalGaps: the expected time to the next request; Returns: whether the
 *                       clients of the last batch answered send again at once (a closed loop)
 *   a worker asks   ──▶ largest(): builtin_handler_batch_size, or the model's batch dimension if
 *                       smaller; a worker takes what is queued up to that many at once, so
 *                       batches grow with a backlog and are single requests without one
 *   a batch forms   ──▶ waitMs(): at capacity, wait to be full; below it, wait for one more only
 *                       while that is cheaper than sending now; never past latencyTargetMs for the
 *                       oldest request, counting its run (but by a return's lag, once, to join a
 *                       closed loop that has split: Returns.rejoinMs); a wait shorter than a
 *                       timer can time (1 ms) lasts to the end of the event loop's turn, for the
 *                       requests read in it; while the fit has seen one size only, for returns
 *                       known to be coming (exploreWindow), so that it sees a second
 *
 * The time fitted is the worker's on the batch plus the front end's (its send, and the handling
 * of the answer, each request's response written): a larger batch saves both, and the front end
 * shares the machine's cores with the workers. Not the round trip from dispatch to answer: on the
 * shared machine (load 14-23) its floors came out 27 ms for every size, or 0 + 2.5 ms a request,
 * the machine's queueing rather than the batch's cost.
 *
 * At capacity. When the requests outstanding (queued, forming, in batches not yet answered) would
 * fill a batch for every worker, the load is at the workers' capacity: requests wait whatever the
 * batch, and each batch sent part full pays the fixed cost again for fewer. The batch waits to be
 * full, for at most a full batch's time from the latest request to join, also while another
 * worker idles (it would take the next request alone: a closed loop of 32 connections on mnist's
 * two workers sent batches of 1 and 7 in turn, a mean of 4-6, where a hand-tuned batch 8 with a
 * 2 ms delay sent 8 and answered 13-16% more). Outstanding lately, not at this moment
 * (PeakDemand): a closed loop's answered clients are unseen until they send again, and counted
 * at the moment they made a loop at capacity read as below it whenever their returns lagged.
 *
 * Below it, the wait rule. A worker holds k requests and may send them now, or wait Δ for a
 * (k+1)th. Sent now, the k finish after t(k) and the next one, arriving at Δ, after
 * max(Δ, t(k)) + t(1); waited, all k+1 finish at Δ + t(k+1). The k+1 latencies sum to less by
 * waiting only when (k+1)·Δ < fixedMs - k·perItemMs: one more request is worth waiting for when
 * it is expected within that window (the batch's fixed cost, less what the k already waiting
 * lose) and the latency target still holds. Expected: by the recent arrivals' mean gap, or, in a
 * closed loop, because clients of the batch just answered have not sent again yet and theirs
 * have come back within the window lately (the mean gap, which counts the silence while the
 * batch ran, said no to them). So a model whose time is mostly per request (a CPU
 * convnet) never waits, one with a large fixed cost (a GPU, a remote call) waits a little under
 * load, and no model waits past the end of the turn at low load (the next request is further off
 * than any window) or while another worker idles (it takes the next request at once). This is
 * the shape of BentoML's CORK dispatcher (a regression of batch time on size; send when waiting
 * costs more than it gains, within a latency bound), derived here for one worker's queue.
 */
import type { AdaptiveLimits } from '../config/model-config.js';
import type { Job } from './job.js';

/** How far a size's floor rises toward a slower batch, each batch: about 50 batches follow a model that became slower. */
const FLOOR_RISE = 0.05;
/**
 * A size's floor is forgotten after this many batches of other sizes: one seen only under a load
 * that has passed (on a busy machine every time grows) would keep the line there, and the single
 * requests that followed could wait for others that were not coming.
 */
const FLOOR_LIFE = 200;
/** The arrivals whose mean gap is the expected gap. */
const RATE_ARRIVALS = 32;
/**
 * The shortest wait a timer times: Node's timers fire 1 ms at the soonest, so a shorter window
 * held each batch a whole millisecond, restarted with each request that joined, while the worker
 * idled (an open loop at 0.7x mnist's capacity: p50 25-28 ms against 3.4 ms,
 * bench/results/20261206-1948-adaptive-batching.json). Such a window waits to the end of the
 * event loop's turn instead (THIS_TURN_MS).
 */
const SHORTEST_TIMER_MS = 1;
/**
 * A wait to the end of the event loop's turn (any under SHORTEST_TIMER_MS: waiting-workers.ts's
 * nodeTimer): the requests read in the same turn join the batch, which costs the batch no timer
 * and the worker the rest of the turn. Taken whenever one more request would pay (the window is
 * positive), also while another worker idles or the next request is expected later than the
 * window: requests are read in bursts, several in one turn.
 */
export const THIS_TURN_MS = SHORTEST_TIMER_MS / 2;
/** How much each return's lag moves Returns' mean: about the last eight count. */
const LAG_WEIGHT = 1 / 8;
/** How much of the mean batch size describe shows each new batch leaves. */
const MEAN_MEMORY = 0.95;
/**
 * How long the pool's peak demand is remembered (PeakDemand), at least: long enough to span a
 * client's return under load, short enough that a load that has passed stops making batches wait.
 */
const DEMAND_LIFE_MS = 50;

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
  /** Each size's floor, and the count of batches when it was last seen. */
  private readonly floors = new Map<number, { ms: number; seen: number }>();
  private batches = 0;

  add(size: number, ms: number): void {
    if (!(size > 0) || !Number.isFinite(ms) || ms < 0) return;
    const floor = this.floors.get(size);
    this.batches++;
    this.floors.set(size, { ms: floor === undefined || ms < floor.ms ? ms : floor.ms + (ms - floor.ms) * FLOOR_RISE, seen: this.batches });
  }

  /** How many batch sizes the line goes through (sizes not seen lately forgotten). */
  sizes(): number {
    for (const [size, floor] of this.floors) if (this.batches - floor.seen > FLOOR_LIFE) this.floors.delete(size);
    return this.floors.size;
  }

  /** The line; undefined before the first batch. */
  line(): BatchTimeLine | undefined {
    const n = this.sizes();
    if (n === 0) return undefined;
    let sumX = 0;
    let sumY = 0;
    let sumXX = 0;
    let sumXY = 0;
    for (const [x, { ms: y }] of this.floors) {
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

/**
 * The mean gap of the last RATE_ARRIVALS arrivals, up to now. Not a running average of single
 * gaps with the silence since the last arrival as a floor: in a closed loop a worker asks just
 * after its answers went out, when their clients have not yet sent again, and that silence said
 * no request was coming when a batch's worth were.
 */
export class ArrivalGaps {
  /** The last RATE_ARRIVALS arrivals' times, a ring. */
  private readonly times: number[] = [];
  private next = 0;

  arrived(now: number): void {
    if (this.times.length < RATE_ARRIVALS) this.times.push(now);
    else this.times[this.next] = now;
    this.next = (this.next + 1) % RATE_ARRIVALS;
  }

  /** The mean gap of the recent arrivals, the silence since the last one counted; undefined before two. */
  expectedGap(now: number): number | undefined {
    const n = this.times.length;
    if (n < 2) return undefined;
    const oldest = this.times[n < RATE_ARRIVALS ? 0 : this.next]!;
    return (now - oldest) / n;
  }
}

/**
 * Clients that send again as soon as they are answered (a closed loop: a benchmark, a pipeline, a
 * few callers in turn): the requests of the last batch answered, and how long after an answer
 * its requests' clients have sent again, lately. The mean gap of ArrivalGaps counts the silence
 * while the batch ran, when such clients cannot send: with one worker and 2-8 of them the gap
 * came out longer than the window, each batch left with the first to return, and the others
 * waited for it to run (a batch of 1 and one of 7 in turn; review-4 F10).
 */
export class Returns {
  private answeredAt = Number.NEGATIVE_INFINITY;
  private answered = 0;
  private returned = 0;
  /** The recent returns' mean time from the answer, ms; undefined before the first. */
  private lagMs: number | undefined;

  /** A batch of `size` was answered at `now`. */
  answer(now: number, size: number): void {
    this.answeredAt = now;
    this.answered = size;
    this.returned = 0;
  }

  /** A request arrived at `now`: the first `answered` after an answer are read as its clients' returns. */
  arrived(now: number): void {
    if (this.returned >= this.answered) return;
    this.returned++;
    const lag = now - this.answeredAt;
    this.lagMs = this.lagMs === undefined ? lag : this.lagMs + (lag - this.lagMs) * LAG_WEIGHT;
  }

  /**
   * Whether one more of the last answer's clients is expected within `windowMs` from `now`:
   * some have not sent again (`batch`'s requests since the answer counted, for the one whose
   * arrival is being enqueued), and their returns are due within the window, or at most a
   * window overdue.
   */
  expectedWithin(batch: readonly Pick<Job, 'arrivedAt'>[], now: number, windowMs: number): boolean {
    if (this.lagMs === undefined) return false;
    let joined = 0;
    for (const job of batch) if (job.arrivedAt >= this.answeredAt) joined++;
    if (Math.max(this.returned, joined) >= this.answered) return false;
    const due = this.answeredAt + this.lagMs - now;
    return due < windowMs && due > -windowMs;
  }

  /** How long a client answered lately takes to send again, at most: twice the recent mean and a timer's resolution; unknown: unbounded. */
  returnWithinMs(): number {
    return this.lagMs === undefined ? Number.POSITIVE_INFINITY : 2 * this.lagMs + SHORTEST_TIMER_MS;
  }

  /**
   * A loop split, and how to join it again: `batch`'s oldest request waited for the last batch
   * (it came while that ran, as the others of a closed loop do once a batch has left without
   * them), which leaves it no room under the latency target, so each batch would leave with what
   * has waited and the returns would wait for it in turn, each request paying two batches (89-101
   * ms against 52-63 for a fixed batch 8 with a 5 ms delay, review-4 F10). If a return is expected
   * within `windowMs`, the batch waits for it, past the target by about a return's lag (twice the
   * recent mean, and a timer's resolution): once, for the batches after hold the loop together.
   * 0: send now.
   */
  rejoinMs(batch: readonly Pick<Job, 'arrivedAt'>[], now: number, windowMs: number): number {
    if (batch[0]!.arrivedAt >= this.answeredAt || !this.expectedWithin(batch, now, windowMs)) return 0;
    const until = Math.min(windowMs, this.answeredAt + 2 * this.lagMs! + SHORTEST_TIMER_MS - now);
    return until > 0 ? timerOrTurn(until) : 0;
  }
}

/**
 * The most requests the pool held at once lately (queued, forming, in batches not yet answered):
 * the clients a closed loop keeps busy, less those on their way back. At a given moment a closed
 * loop's answered clients are between their answer and their next request, unseen: with 32
 * connections on two workers one worker's batch of 8 was out and the other's forming one short of
 * 16, read as below capacity, so batches left with 3-6 whenever the clients' returns lagged a
 * loaded machine's scheduling (mean batch 6.6 against the hand-tuned 8, 0.84x its throughput).
 * Remembered for two spans of `lifeMs`, the older span forgotten as a new one starts.
 */
export class PeakDemand {
  private current = 0;
  private previous = 0;
  private since = Number.NEGATIVE_INFINITY;

  /** `demand` requests are held at `now`; the peak of the last one to two `lifeMs`. */
  seen(now: number, demand: number, lifeMs: number): number {
    if (now - this.since >= lifeMs) {
      this.previous = now - this.since < 2 * lifeMs ? this.current : 0;
      this.current = 0;
      this.since = now;
    }
    this.current = Math.max(this.current, demand);
    return Math.max(this.current, this.previous);
  }
}

/** The pool's load when a batch forms. */
export interface PoolLoad {
  /** Requests besides the forming batch's: queued, or in batches its workers have not answered. */
  readonly outstanding: number;
  /** Its workers that serve. */
  readonly workers: number;
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
  private readonly returns = new Returns();
  private readonly demand = new PeakDemand();
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
    const now = this.now();
    this.arrivals.arrived(now);
    this.returns.arrived(now);
  }

  /** A batch of `size` requests, answered now, took `ms`: the worker's time on it and the front end's. */
  ran(size: number, ms: number): void {
    this.fit.add(size, ms);
    this.returns.answer(this.now(), size);
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
   * next request at once, so below capacity nobody gains by waiting); `load`: the pool's. See the
   * module header for the rule.
   */
  waitMs(batch: readonly Pick<Job, 'arrivedAt'>[], idleBehind: number, load: PoolLoad = { outstanding: 0, workers: 1 }): number {
    this.lastWaitMs = this.decideWait(batch, idleBehind, load);
    return this.lastWaitMs;
  }

  private decideWait(batch: readonly Pick<Job, 'arrivedAt'>[], idleBehind: number, load: PoolLoad): number {
    const held = batch.length;
    const line = this.fit.line();
    const largest = this.largest();
    if (held === 0 || !line || held >= largest) return 0;
    const now = this.now();
    const waited = now - batch[0]!.arrivedAt;
    const delayRoom = this.limits.maxWaitMs === undefined ? Number.POSITIVE_INFINITY : this.limits.maxWaitMs - waited;
    const room = Math.min(this.limits.latencyTargetMs - waited - timeOf(line, held + 1), delayRoom);
    const demand = held + load.outstanding;
    const full = load.workers * largest;
    const demandLifeMs = Math.max(DEMAND_LIFE_MS, 2 * timeOf(line, largest));
    if (this.demand.seen(now, demand, demandLifeMs) >= full) {
      // Full only with the clients on their way back: waited for as long as a return takes, so
      // that one late client does not hold the others a whole batch's time (8 clients of a 50 ms
      // batch on one worker: p99 104-139 ms against 59-71 while it waited t(8) for a late one).
      const returning = demand >= full ? Number.POSITIVE_INFINITY : this.returns.returnWithinMs();
      return room > 0 ? timerOrTurn(Math.min(timeOf(line, largest), room, returning)) : 0;
    }
    const exploring = this.fit.sizes() === 1;
    const window = exploring ? exploreWindow(line, held) : (line.fixedMs - held * line.perItemMs) / (held + 1);
    if (window <= 0 || delayRoom <= 0) return 0;
    if (idleBehind > 0) return room > 0 && !exploring ? THIS_TURN_MS : 0;
    // Returns are waited for only when nothing else is outstanding: the loop is this batch and
    // them. With a backlog (32 clients on two workers) the oldest has always waited for a batch,
    // and waiting for returns idled a worker that had work.
    const returning = load.outstanding === 0 && this.returns.expectedWithin(batch, now, window);
    // A loop split: the wait for its returns may pass the target by a return's lag, also where
    // a little room is left (a flat fit: t(k + 1) = t(k) left the oldest a millisecond, shorter
    // than the returns' lag, and 4 clients ran in batches of 1 and 3 in turn).
    const rejoin = returning ? this.returns.rejoinMs(batch, now, Math.min(window, delayRoom)) : 0;
    if (room <= 0) return rejoin;
    if (returning) return Math.max(timerOrTurn(Math.min(window, room)), rejoin);
    // Exploring, only returns known to be coming are waited for: a lone client's request leaves at once.
    if (exploring) return 0;
    const gap = this.arrivals.expectedGap(now);
    return gap !== undefined && gap < window ? timerOrTurn(Math.min(window, room)) : THIS_TURN_MS;
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

/**
 * While the fit has seen one batch size only, the window for one more request as if the batch's
 * time were all fixed cost: the most waiting could pay. The line through the origin that such a
 * fit is says a larger batch never pays, so nothing would wait and no larger batch would ever be
 * seen to say otherwise (a fresh server's two clients on one worker ran in batches of 1 for good,
 * each request paying two 50 ms batches: F7). Only returns known to be coming are waited for in
 * it, so the cost of finding out is one return's lag, once: the next batch's time puts a second
 * size in the fit.
 */
function exploreWindow(line: BatchTimeLine, held: number): number {
  return timeOf(line, held) / (held + 1);
}

/** `ms` as a timer's wait, or, shorter than a timer times, to the end of the turn. */
function timerOrTurn(ms: number): number {
  return ms >= SHORTEST_TIMER_MS ? ms : THIS_TURN_MS;
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/**
 * @module workers/scaler
 * Workers follow the load, between a model's minWorkers and maxWorkers (TorchServe's keys, which
 * drive no scaling there). With maxWorkers above minWorkers:
 *
 *   requests wait ──(more than waitingPerWorker a worker, on average over upDelayMs,
 *                    or any refused for a full queue in that time)──▶ add workers
 *   a request, no worker (minWorkers 0) ──(at once)──▶ start one: the request waits for it
 *   fewer workers needed ──(for downDelayMs)──▶ stop the idle ones (a batch is finished first)
 *
 * "Needed" is how many workers were busy at once, or the waiting requests asked for, at any moment
 * of the last downDelayMs (neededAt: for each count, when it was last needed): a worker that just
 * ran a batch at 10 requests/s is not needed when another idled meanwhile, which a per-worker idle
 * time would not see, as idle workers take turns at the queue. No worker is added while one is
 * still starting (beside loaded ones, its load would count as want; with none loaded, every
 * request waits for the start, and more start as it is READY if they waited above the target),
 * nor above the bounds the machine sets: maxWorkers, the cores (every model's workers together)
 * and the free memory (this model's workers' measured size), and the model's memory budget (models/model-memory.ts admits each worker it starts, the
 * first one for minWorkers 0 too; 'memory' when it held); the one that held is told. A stateful
 * model's workers hold its sequences: none is stopped, and its refusals (its sequences') are not
 * load (models/model.ts tells no refusal of them).
 * The scaler runs on a timer only while there is something to decide; an idle model costs nothing.
 */
import type { ScalingPolicy } from '../config/model-config.js';
import type { Machine } from './machine.js';

export type ScaleReason = 'waiting' | 'queue_full' | 'cold_start' | 'idle';
export type Bound = 'max_worker' | 'cores' | 'memory';

/** A scale the scaler made, or wanted and a bound held (from === to). */
export interface ScaleEvent {
  readonly direction: 'up' | 'down';
  readonly reason: ScaleReason;
  readonly from: number;
  readonly to: number;
  /** What it wanted; above `to` when a bound held. */
  readonly wanted: number;
  readonly bound: Bound | undefined;
}

/** What the scaler reads of the model's settings. */
export interface ScaledSettings {
  readonly minWorkers: number;
  readonly maxWorkers: number;
  readonly scaling: ScalingPolicy;
}

/** What the scaler sees of its pool (workers/worker-pool.ts) and asks of it. */
export interface ScaledPool {
  readonly size: number;
  /** A worker is starting (loading its model). */
  readonly starting: boolean;
  /** Clients' requests waiting for a worker: the front end's warm-up's own are no load to follow. */
  readonly waiting: number;
  /** Workers running a batch now. */
  readonly busy: number;
  /** A stateful model's workers hold its sequences: none may be stopped for being idle. */
  readonly keepsWorkers: boolean;
  /** Process ids of the workers with the model loaded, to measure a worker's size. */
  loadedPids(): number[];
  add(count: number): void;
  /** Stops up to `count` workers that run no batch; how many it stops. */
  retireIdle(count: number): number;
}

export interface ScalerDeps {
  readonly machine: Machine;
  readonly now: () => number;
  readonly onScale: (event: ScaleEvent) => void;
  /**
   * Asked before workers start: how many of `count` more the model's memory budget admits now
   * (models/model-memory.ts); all of them where no budget is kept.
   */
  readonly admit?: (count: number) => number;
}

/** A worker's size before one has been measured: config's MEMORY_PER_WORKER, room for a model. */
const UNMEASURED_WORKER_BYTES = 256 * 1024 * 1024;
/** Decisions are looked at ten times per delay, at most every second, at least every 10 ms. */
const TICKS_PER_DELAY = 10;

/** What describe shows of the scaler. */
export interface ScalerState {
  readonly waitingPerWorker: number;
  readonly scaleUpDelayMSec: number;
  readonly scaleDownDelayMSec: number;
  /** Workers follow the load: maxWorkers is above minWorkers. */
  readonly enabled: boolean;
  readonly currentWorkers: number;
  readonly desiredWorkers: number;
  /** Each bound's count of this model's workers now. */
  readonly limits: Readonly<Record<Bound, number>>;
  /** The bound that held the last scale-up short; null when none did. */
  readonly boundHeld: Bound | null;
}

export class Scaler {
  private readonly pool: ScaledPool;
  private readonly settings: () => ScaledSettings;
  private readonly deps: ScalerDeps;
  private timer: NodeJS.Timeout | undefined;
  /** When the current upDelayMs window began, and the waiting requests sampled in it. */
  private upSince = 0;
  private waitingSum = 0;
  private samples = 0;
  /** A request was refused in this window: the queue overflowed, whatever its average. */
  private overflowed = false;
  /** neededAt[k - 1]: when k workers were last needed. */
  private readonly neededAt: number[] = [];
  private desired = 0;
  private held: Bound | undefined;

  constructor(pool: ScaledPool, settings: () => ScaledSettings, deps: ScalerDeps) {
    this.pool = pool;
    this.settings = settings;
    this.deps = deps;
  }

  private get enabled(): boolean {
    const s = this.settings();
    return s.maxWorkers > s.minWorkers;
  }

  /**
   * A request was enqueued: with no worker, one starts now (minWorkers 0), and the timer runs.
   * Called for every request: cheap when nothing is to be done.
   */
  arrived(): void {
    if (!this.enabled) return;
    if (this.pool.size === 0) this.coldStart();
    this.watch();
  }

  /**
   * A request was refused for load (a full queue, or useJobTicket's no worker free): bursts can
   * overflow a queue whose average stays below the target, and a refused request is load the
   * workers did not take.
   */
  refused(): void {
    if (!this.enabled) return;
    this.watch();
    this.overflowed = true;
  }

  /** `count` workers are running a batch at once. */
  busy(count: number): void {
    if (this.enabled) this.need(count, this.deps.now());
  }

  /**
   * The operator set the range (or the pool started): the workers there are now count as needed
   * from now, so that none is stopped before downDelayMs, and the timer runs if some are above
   * minWorkers or requests wait. At minWorkers it waits for a request (arrived): the front end's
   * warm-up, whose predictions are not a load to follow, sends none that counts.
   */
  reset(): void {
    this.stop();
    if (!this.enabled) return;
    this.need(this.pool.size, this.deps.now());
    this.desired = this.pool.size;
    // Requests already waiting (queued while the model was unloaded) are a load too: the next tick
    // starts their worker, none arriving to ask for it.
    if (this.pool.size > this.settings().minWorkers || this.pool.waiting > 0) this.watch();
  }

  /** Looks at the pool: the timer's work, and a test's with its own clock. */
  tick(): void {
    const s = this.settings();
    if (!this.enabled) {
      this.stop();
      return;
    }
    const now = this.deps.now();
    const { waiting } = this.pool;
    const perWorker = Math.max(1, s.scaling.waitingPerWorker);
    this.need(Math.min(s.maxWorkers, Math.max(this.pool.busy, Math.ceil(waiting / perWorker))), now);
    if (this.pool.size === 0 && waiting > 0) this.coldStart();
    else this.considerUp(s, waiting, perWorker, now);
    this.considerDown(s, now);
    if (this.pool.size <= s.minWorkers && this.quietSince(now, s.scaling.upDelayMs)) this.stop();
  }

  /**
   * Nothing ran, waited or was refused for `ms`: the timer may stop until the next request. Not at
   * the first idle moment: a load near capacity has many, and each stop began a new window.
   */
  private quietSince(now: number, ms: number): boolean {
    return !this.overflowed && now - (this.neededAt[0] ?? Number.NEGATIVE_INFINITY) >= ms;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** What describe shows: the policy, and the workers there are, wanted and allowed. */
  state(): ScalerState {
    const s = this.settings();
    return {
      waitingPerWorker: s.scaling.waitingPerWorker,
      scaleUpDelayMSec: s.scaling.upDelayMs,
      scaleDownDelayMSec: s.scaling.downDelayMs,
      enabled: this.enabled,
      currentWorkers: this.pool.size,
      desiredWorkers: this.enabled ? this.desired : this.pool.size,
      limits: this.limits(s),
      boundHeld: this.held ?? null,
    };
  }

  /** Starts the first worker, if the memory budget admits it; else the next tick asks again. */
  private coldStart(): void {
    if (this.admitted(1) < 1) return;
    this.pool.add(1);
    this.need(1, this.deps.now());
    this.desired = Math.max(this.desired, 1);
    this.deps.onScale({ direction: 'up', reason: 'cold_start', from: 0, to: 1, wanted: 1, bound: undefined });
  }

  /** Runs the timer, from a fresh upDelayMs window, unless it runs already. */
  private watch(): void {
    if (this.timer) return;
    const { upDelayMs, downDelayMs } = this.settings().scaling;
    const every = Math.min(1000, Math.max(10, Math.min(upDelayMs, downDelayMs) / TICKS_PER_DELAY));
    this.restartUpWindow(this.deps.now());
    this.timer = setInterval(() => this.tick(), every);
    this.timer.unref();
  }

  private restartUpWindow(now: number): void {
    this.upSince = now;
    this.waitingSum = 0;
    this.samples = 0;
    this.overflowed = false;
  }

  /**
   * Samples the waiting requests; at the end of the window, adds workers if they waited too many.
   * While a worker starts beside loaded ones, the requests that wait for it are not sampled: they
   * would count as want what it is about to take. With none loaded (a cold model, min_worker 0)
   * they are, every request waiting for the start alike, and the window that ends during the
   * start is decided as the first worker is READY: a load that fills the queue meanwhile gets its
   * second worker then, not one up delay later (2.3-2.5 s after a step to 300/s in
   * bench/elastic-step.mjs --runs cold). Not during the start: on two cores a second start beside
   * the first made the first READY 0.3-0.4 s later, and a fifth more requests were refused for the
   * full queue meanwhile.
   */
  private considerUp(s: ScaledSettings, waiting: number, perWorker: number, now: number): void {
    const cold = this.pool.loadedPids().length === 0;
    if (this.pool.starting && !cold) {
      this.restartUpWindow(now);
      return;
    }
    this.waitingSum += waiting;
    this.samples++;
    if (now - this.upSince < s.scaling.upDelayMs || this.pool.starting) return;
    const average = this.waitingSum / this.samples;
    const overflowed = this.overflowed;
    this.restartUpWindow(now);
    const from = this.pool.size;
    if (average <= perWorker * from && !overflowed) {
      this.desired = from;
      this.held = undefined;
      return;
    }
    const wanted = Math.max(from + 1, Math.ceil(average / perWorker));
    const limits = this.limits(s);
    const [bound, allowed] = tightest(limits);
    const within = Math.max(from, Math.min(wanted, allowed));
    const to = within > from ? from + this.admitted(within - from) : within;
    // The memory budget held it: the model's room among the models loaded, a memory bound too.
    const heldNow = to < within ? 'memory' : wanted > allowed ? bound : undefined;
    this.desired = wanted;
    if (to > from) {
      this.pool.add(to - from);
      this.need(to, now);
    }
    // A bound that goes on holding is told once, not at every window.
    const reason = average > perWorker * from ? 'waiting' : 'queue_full';
    if (to > from || heldNow !== this.held) this.deps.onScale({ direction: 'up', reason, from, to, wanted, bound: heldNow });
    this.held = heldNow;
  }

  /** Stops the workers above what was needed over the last downDelayMs, if they idle. */
  private considerDown(s: ScaledSettings, now: number): void {
    if (this.pool.keepsWorkers) return;
    const from = this.pool.size;
    let needed = s.minWorkers;
    for (let k = from; k > needed; k--) {
      if (now - (this.neededAt[k - 1] ?? Number.NEGATIVE_INFINITY) < s.scaling.downDelayMs) {
        needed = k;
        break;
      }
    }
    if (needed >= from) return;
    const stopped = this.pool.retireIdle(from - needed);
    if (stopped === 0) return;
    this.desired = needed;
    this.held = undefined;
    this.deps.onScale({ direction: 'down', reason: 'idle', from, to: from - stopped, wanted: needed, bound: undefined });
  }

  private admitted(count: number): number {
    return this.deps.admit ? this.deps.admit(count) : count;
  }

  /** 1..count workers are needed at `now`. */
  private need(count: number, now: number): void {
    for (let k = 0; k < count; k++) this.neededAt[k] = now;
  }

  /** Each bound's count of this model's workers, as the machine is now. */
  private limits(s: ScaledSettings): Record<Bound, number> {
    const { machine } = this.deps;
    const size = this.pool.size;
    const measured = Math.max(0, ...this.pool.loadedPids().map((pid) => machine.residentBytes(pid)));
    const workerBytes = measured > 0 ? measured : UNMEASURED_WORKER_BYTES;
    return {
      max_worker: s.maxWorkers,
      cores: size + Math.max(0, machine.cores() - machine.workers()),
      memory: size + Math.floor(machine.spareMemory() / workerBytes),
    };
  }
}

/** The bound with the fewest workers, and its count; the operator's max_worker first when tied. */
function tightest(limits: Readonly<Record<Bound, number>>): [Bound, number] {
  let best: [Bound, number] = ['max_worker', limits.max_worker];
  for (const bound of ['cores', 'memory'] as const) if (limits[bound] < best[1]) best = [bound, limits[bound]];
  return best;
}

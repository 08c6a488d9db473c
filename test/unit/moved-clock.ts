// A clock a test moves, for the batching clocks (maxBatchDelay's timers, adaptive batching's now).
import type { StartTimer } from '../../src/batching/waiting-workers.js';

export interface MovedClock {
  now: () => number;
  start: StartTimer;
  /** Moves the clock, fires the timers due, and lets a batch that left reach whoever awaits it. */
  advance: (ms: number) => Promise<void>;
  /**
   * Moves the clock and fires the timers due, without a turn of the event loop: for a stretch in
   * which nothing awaits a batch (a closed loop's batch running), where advance's turn only costs.
   */
  move: (ms: number) => void;
}

/** `start` as a StartTimer: a timer fires when the clock reaches its time, never before. */
export function movedClock(): MovedClock {
  let now = 0;
  const timers = new Set<{ at: number; fire: () => void }>();
  const move = (ms: number): void => {
    now += ms;
    for (const timer of [...timers].filter((x) => x.at <= now)) {
      timers.delete(timer);
      timer.fire();
    }
  };
  return {
    now: () => now,
    start(fire, ms) {
      const timer = { at: now + ms, fire };
      timers.add(timer);
      return () => timers.delete(timer);
    },
    move,
    async advance(ms) {
      move(ms);
      // Lets a batch that left reach whoever awaits it.
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

// A clock a test moves, for the batching clocks (maxBatchDelay's timers, adaptive batching's now).
import type { StartTimer } from '../../src/batching/waiting-workers.js';

/** `start` as a StartTimer: a timer fires when the clock reaches its time, never before. */
export function movedClock(): { now: () => number; start: StartTimer; advance: (ms: number) => Promise<void> } {
  let now = 0;
  const timers = new Set<{ at: number; fire: () => void }>();
  return {
    now: () => now,
    start(fire, ms) {
      const timer = { at: now + ms, fire };
      timers.add(timer);
      return () => timers.delete(timer);
    },
    async advance(ms) {
      now += ms;
      for (const timer of [...timers].filter((x) => x.at <= now)) {
        timers.delete(timer);
        timer.fire();
      }
      // Lets a batch that left reach whoever awaits it.
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

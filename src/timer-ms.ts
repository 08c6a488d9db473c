/**
 * @module timer-ms
 * A configured wait as Node's timers can take it. They take at most 2^31 - 1 ms (24.8 days); a
 * longer one (download_timeout, a model's response_timeout or startup_timeout are any int of
 * seconds) fires after 1 ms instead, which failed every download or prediction. Longer means
 * practically never, so it is the longest wait there is.
 */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

export function timerMs(ms: number): number {
  return Math.min(ms, LONGEST_TIMER_MS);
}

// The front end's memory bound for the fault tests whose server runs in the test process: its
// resident size is sampled while the test feeds it oversized input, and the peak must stay under
// 1.5x the size before it (HEAP_ROOM more at least) plus MARGIN. 1.5x leaves V8's heap room to
// grow and collect as it does under any load; MARGIN covers what the server may legitimately hold at once here: a body or an
// answer up to its limit (a few MB) in its few copies (socket reads, the parsed value, the IPC
// message), and the test's own client. An input held whole (hundreds of MB) passes both.
import { readFileSync } from 'node:fs';
import type { Test } from 'tap';

const MARGIN = 64 * 1024 * 1024;
/**
 * The heap's room to grow, at least: V8's growth under a load does not shrink with a smaller
 * start. Since the test processes load less (tap's unused plugins and source maps left out: ~150 MB
 * at the start against ~230), 1.5x alone left trace-long-names' usual +125-140 MB (the same as
 * before) at the bound, and a CI run past it.
 */
const HEAP_ROOM = 128 * 1024 * 1024;
const SAMPLE_MS = 20;

export interface MemoryWatch {
  /** Stops sampling and asserts the peak stayed within the bound. */
  check(t: Test): void;
}

/** Starts sampling this process's resident size (or `pid`'s, from /proc, for a server run as a child). */
export function frontEndMemory(pid?: number): MemoryWatch {
  const rss = (): number => (pid === undefined ? process.memoryUsage.rss() : vmRss(pid));
  const before = rss();
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, rss());
  }, SAMPLE_MS);
  return {
    check(t) {
      clearInterval(timer);
      peak = Math.max(peak, rss());
      const bound = before + Math.max(0.5 * before, HEAP_ROOM) + MARGIN;
      t.ok(peak <= bound, `the front end's RSS peaked at ${mb(peak)} (before: ${mb(before)}, bound: ${mb(bound)})`);
    },
  };
}

function vmRss(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb ?? 0) * 1024;
}

function mb(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MB`;
}

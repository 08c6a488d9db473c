// Preloaded into a server (`--server-node-options=--import=<this file>` of bench/many-models.mjs):
// each second, appends the event loop's delay over that second (perf_hooks' histogram, ms) to
// $TMPDIR/loop-delay-<pid>.jsonl, stamped with CLOCK_MONOTONIC in µs as the bench's phase spans
// are, so that a phase's seconds can be picked out: how long the front end's event loop kept
// requests waiting. Any node process started with it writes its own file (the launcher too).
import { appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const file = join(tmpdir(), `loop-delay-${process.pid}.jsonl`);
const histogram = monitorEventLoopDelay({ resolution: 10 });
histogram.enable();
const ms = (ns) => Number((ns / 1e6).toFixed(2));
setInterval(() => {
  const line = {
    us: Number(process.hrtime.bigint() / 1000n),
    mean: ms(histogram.mean),
    p50: ms(histogram.percentile(50)),
    p99: ms(histogram.percentile(99)),
    max: ms(histogram.max),
  };
  histogram.reset();
  appendFileSync(file, `${JSON.stringify(line)}\n`);
}, 1000).unref();

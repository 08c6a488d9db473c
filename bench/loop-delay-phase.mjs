// The front end's event-loop delay in each phase of a bench/many-models.mjs run, from the files
// bench/loop-delay-probe.mjs wrote: the seconds within each phase's span (A2's and B's windows
// where they are interleaved in pairs), their mean delay, the worst second's p99 and the max. The
// probe's histogram has a 10 ms resolution: a second's delays are 10 ms plus what the loop held.
//   node bench/loop-delay-phase.mjs RESULTS.json LOOP-DELAY.jsonl
import { readFileSync } from 'node:fs';

const [resultsFile, delayFile] = process.argv.slice(2);
const results = JSON.parse(readFileSync(resultsFile, 'utf8'));

/** The first value in `value` that `pick` finds something in (one mode's). */
function firstIn(value, pick) {
  if (!value || typeof value !== 'object') return undefined;
  const here = pick(value);
  if (here) return here;
  for (const v of Object.values(value)) {
    const found = firstIn(v, pick);
    if (found) return found;
  }
  return undefined;
}
const windows = Object.fromEntries(Object.entries(firstIn(results, (v) => v.phasesMonotonicUs)).map(([phase, span]) => [phase, [span]]));
// With pairs, A2's and B's spans run from the first window to the last, over each other's windows.
const pairs = firstIn(results, (v) => (Array.isArray(v.each) && v.each[0]?.monotonicUs ? v.each.map((w) => w.monotonicUs) : undefined));
if (pairs) for (const phase of ['a2', 'b']) windows[phase] = pairs.map((w) => w[phase]);
const seconds = readFileSync(delayFile, 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l));
const out = {};
for (const [phase, spans] of Object.entries(windows)) {
  // A line sums the second before its stamp: those wholly inside a window.
  const inside = seconds.filter((s) => spans.some((span) => s.us - 1e6 >= span.start && s.us <= span.end));
  if (inside.length === 0) continue;
  const mean = inside.reduce((sum, s) => sum + s.mean, 0) / inside.length;
  const p50s = inside.map((s) => s.p50).sort((a, b) => a - b);
  out[phase] = {
    seconds: inside.length,
    meanMs: Number(mean.toFixed(2)),
    medianSecondP50Ms: p50s[Math.floor(p50s.length / 2)],
    worstSecondP99Ms: Math.max(...inside.map((s) => s.p99)),
    maxMs: Math.max(...inside.map((s) => s.max)),
  };
}
console.log(JSON.stringify(out));

// The front end's event-loop delay in each phase of a bench/many-models.mjs run, from the files
// bench/loop-delay-probe.mjs wrote: the seconds within each phase's span, their mean delay, the
// worst second's p99 and the max.
//   node bench/loop-delay-phase.mjs RESULTS.json LOOP-DELAY.jsonl
import { readFileSync } from 'node:fs';

const [resultsFile, delayFile] = process.argv.slice(2);
const results = JSON.parse(readFileSync(resultsFile, 'utf8'));
/** The first phasesMonotonicUs in the results (one mode's). */
function spansIn(value) {
  if (!value || typeof value !== 'object') return undefined;
  if (value.phasesMonotonicUs) return value.phasesMonotonicUs;
  for (const v of Object.values(value)) {
    const found = spansIn(v);
    if (found) return found;
  }
  return undefined;
}
const spans = spansIn(results);
const seconds = readFileSync(delayFile, 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l));
const out = {};
for (const [phase, span] of Object.entries(spans)) {
  // A line sums the second before its stamp: those wholly inside the span.
  const inside = seconds.filter((s) => s.us - 1e6 >= span.start && s.us <= span.end);
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

#!/usr/bin/env node
// What failed in a tap run, from its log, in a few lines each: for every failed assertion (a
// "not ok" with no "# time=", which tap puts on subtests and files), its test file and subtests as
// a path, where it is, and tap's diff of what was wanted and found; for a file that failed with no
// assertion failed (it crashed, or was killed at its timeout), its exit code and signal. .ci/run
// repeats this above its total, so that a log's last lines name what failed. TODO and SKIP are not
// failures. At most MAX_FAILURES are shown, the rest counted.
//
//   node scripts/failed-tests.mjs <tap log>
import { readFileSync } from 'node:fs';

const MAX_FAILURES = 12;
const MAX_DIFF_LINES = 10;
const INDENT = 4;

const lines = readFileSync(process.argv[2], 'utf8').split('\n');
/** The names of the subtests open at each depth: [file, subtest, ...]. */
const open = [];
const failures = [];
/** The files with a failed assertion already shown. */
const shownFiles = new Set();

for (let i = 0; i < lines.length; i++) {
  const line = lines[i];
  const subtest = /^(\s*)# Subtest: (.*)$/.exec(line);
  if (subtest) {
    const depth = subtest[1].length / INDENT;
    open.length = depth;
    open[depth] = subtest[2];
    continue;
  }
  const failed = /^(\s*)not ok \d+ - (.*)$/.exec(line);
  if (!failed || /# (TODO|SKIP)\b/.test(failed[2])) continue;
  const depth = failed[1].length / INDENT;
  const details = yamlBlock(i + 1, failed[1]);
  if (!/# time=/.test(failed[2])) {
    const where = /^\s*fileName: (.*)$/m.exec(details.join('\n'))?.[1];
    const at = /^\s*lineNumber: (\d+)$/m.exec(details.join('\n'))?.[1];
    failures.push([`${[...open.slice(0, depth), failed[2]].join(' > ')}${where ? `  (${where}:${at})` : ''}`, ...diffOf(details)]);
    shownFiles.add(open[0]);
  } else if (depth === 0) {
    const file = failed[2].replace(/ # time=.*$/, '');
    if (shownFiles.has(file)) continue;
    const exit = /^\s*exitCode: (.*)$/m.exec(details.join('\n'))?.[1];
    const signal = /^\s*signal: (.*)$/m.exec(details.join('\n'))?.[1];
    failures.push([`${file}: no assertion failed; the file exited with code ${exit ?? '?'}, signal ${signal ?? '?'}`]);
  }
}

for (const failure of failures.slice(0, MAX_FAILURES)) {
  const [title, ...diff] = failure;
  console.log(`  ${title}`);
  for (const d of diff) console.log(`      ${d}`);
}
if (failures.length > MAX_FAILURES) console.log(`  ... and ${failures.length - MAX_FAILURES} more failures (search the log for "not ok")`);

/** The YAML block tap writes under the result at `from` (indented `indent` plus two), its lines. */
function yamlBlock(from, indent) {
  if (lines[from]?.trim() !== '---') return [];
  const block = [];
  for (let j = from + 1; j < lines.length && lines[j].trim() !== '...'; j++) block.push(lines[j].slice(indent.length + 2));
  return block;
}

/** tap's diff of an assertion (its `diff:` block), its @@ lines dropped; at most MAX_DIFF_LINES. */
function diffOf(details) {
  // tap writes it literal (`|`) or, for a long line, folded (`>`, a blank line between lines).
  const start = details.findIndex((l) => /^diff: [|>]/.test(l));
  if (start < 0) return [];
  const diff = [];
  for (const l of details.slice(start + 1)) {
    if (l.trim() === '') continue;
    if (!l.startsWith('  ')) break;
    if (!l.startsWith('  @@')) diff.push(l.slice(2));
  }
  return diff.length > MAX_DIFF_LINES ? [...diff.slice(0, MAX_DIFF_LINES), `... (${diff.length - MAX_DIFF_LINES} more lines)`] : diff;
}

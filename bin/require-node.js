// The one Node.js version check. Older lines do not fail where the cause is: on Node.js 20 the
// server comes up half-supported and every test file prints the same stack. So each entry point
// (the bin scripts, `npm test`, the tests' loader) calls this before loading anything else, and
// stops at once with one line naming the version it needs.
//   node bin/require-node.js tests    the check `npm test` runs first (its `pretest`)
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The tests load TypeScript with module.registerHooks, which came in 22.15. */
const TESTS_MINIMUM = '22.15';

/** package.json's engines: what tsserve itself runs on. */
function enginesMinimum() {
  const { engines } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  return engines.node.replace(/^>=\s*/, '');
}

function older(version, minimum) {
  const have = version.replace(/^v/, '').split('.').map(Number);
  const need = minimum.split('.').map(Number);
  for (let i = 0; i < need.length; i++) {
    if ((have[i] ?? 0) !== need[i]) return (have[i] ?? 0) < need[i];
  }
  return false;
}

/** Exits with one line when this Node.js is older than `minimum` (default: package.json's engines). */
export function requireNode(what = 'tsserve', minimum = enginesMinimum()) {
  if (!older(process.version, minimum)) return;
  console.error(`${what}: Node.js ${minimum} or later is needed; this is Node.js ${process.version} (${process.execPath}).`);
  process.exit(1);
}

export function requireNodeForTests() {
  requireNode("tsserve's tests (they load TypeScript with module.registerHooks)", TESTS_MINIMUM);
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'tests') requireNodeForTests();

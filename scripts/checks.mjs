#!/usr/bin/env node
// npm test's checks before the suite, side by side: the linter, the build (dist/, which the
// end-to-end tests run) and the tests' type check. Each spends most of its time on one core, so
// on two cores the three take about as long as the longest, not as the three in a row (about 10 s
// of the suite's two minutes). Each one's output is printed whole, in this order, once it has
// ended; the exit status is 1 when any failed.
import { spawn } from 'node:child_process';

const CHECKS = [
  ['biome', ['check', '--error-on-warnings']],
  ['npm', ['run', '--silent', 'build']],
  ['tsc', ['-p', 'tsconfig.test.json']],
];

/** Runs `command` (from node_modules/.bin, which npm puts on PATH); its status and its output. */
function run([command, args]) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const output = [];
    child.stdout.on('data', (chunk) => output.push(chunk));
    child.stderr.on('data', (chunk) => output.push(chunk));
    child.once('error', (err) => resolve({ status: 1, output: `${command}: ${err.message}\n` }));
    child.once('close', (status) => resolve({ status, output: Buffer.concat(output).toString('utf8') }));
  });
}

const results = await Promise.all(CHECKS.map(run));
for (const [i, { status, output }] of results.entries()) {
  const [command, args] = CHECKS[i];
  process.stdout.write(`> ${command} ${args.join(' ')}${status === 0 ? '' : ` (failed: ${status})`}\n${output}`);
}
process.exitCode = results.every((r) => r.status === 0) ? 0 : 1;

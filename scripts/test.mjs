#!/usr/bin/env node
// npm test: the build (dist/, which the end-to-end tests run), then the suite (tap) beside the
// linter and the tests' type check. The suite is CPU-bound on two cores; the two checks each spend
// their ~12 s on one core, so run before the suite they left the other core idle, and beside it
// they cost the suite's wall time about half of their CPU instead of all of their wall time. The
// suite's output streams as it runs; each check's is printed whole once the suite has ended. The
// exit status is 1 when anything failed (arguments go to tap: `npm test -- test/x.test.ts`).
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';

const CHECKS = [
  ['biome', ['check', '--error-on-warnings']],
  ['tsc', ['-p', 'tsconfig.test.json']],
];

/** Runs `command` (from node_modules/.bin, which npm puts on PATH); its status and, unless streamed, its output. */
function run([command, args], { streamed = false, env = process.env } = {}) {
  return new Promise((resolve) => {
    const stdio = ['ignore', streamed ? 'inherit' : 'pipe', streamed ? 'inherit' : 'pipe'];
    const child = spawn(command, args, { stdio, env });
    const output = [];
    child.stdout?.on('data', (chunk) => output.push(chunk));
    child.stderr?.on('data', (chunk) => output.push(chunk));
    child.once('error', (err) => resolve({ status: 1, output: `${command}: ${err.message}\n` }));
    child.once('close', (status) => resolve({ status, output: Buffer.concat(output).toString('utf8') }));
  });
}

/** Prints a check's heading (with its status when it failed) and its output. */
function report([command, args], { status, output }) {
  process.stdout.write(`> ${command} ${args.join(' ')}${status === 0 ? '' : ` (failed: ${status})`}\n${output}`);
}

const build = ['npm', ['run', '--silent', 'build']];
const built = await run(build);
report(build, built);
if (built.status !== 0) process.exit(1);
const checks = CHECKS.map((check) => run(check));
// The test files' processes skip tap's file recorder (test/skip-processinfo.mjs says why).
const skipProcessinfo = `--import=${pathToFileURL('test/skip-processinfo.mjs').href}`;
const env = { ...process.env, NODE_OPTIONS: `${skipProcessinfo} ${process.env.NODE_OPTIONS ?? ''}`.trim() };
const suite = await run(['tap', process.argv.slice(2)], { streamed: true, env });
const results = await Promise.all(checks);
for (const [i, result] of results.entries()) report(CHECKS[i], result);
process.exitCode = suite.status === 0 && results.every((r) => r.status === 0) ? 0 : 1;

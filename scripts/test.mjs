#!/usr/bin/env node
// npm test: the build (dist/, which the end-to-end tests run), then the suite (tap) beside the
// linter and the tests' type check. The suite is CPU-bound on two cores; the two checks each spend
// their ~12 s on one core, so run before the suite they left the other core idle, and beside it
// they cost the suite's wall time about half of their CPU instead of all of their wall time. The
// suite's output streams as it runs; each check's is printed whole once the suite has ended. The
// exit status is 1 when anything failed (arguments go to tap: `npm test -- test/x.test.ts`).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { keepsStripped, strippedDir, strippedSource } from '../test/stripped-ts.mjs';

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

/**
 * On Node.js 22, the tests' TypeScript stripped once, here, before the suite (test/stripped-ts.mjs):
 * in a fresh clone, each of the first test files' processes stripped the same sources at once, a
 * WebAssembly compiler started in each (npm test 132 s on Node 22 in a fresh clone, 106 s after).
 */
function fillStrippedCache() {
  const dir = strippedDir(process.env.NODE_COMPILE_CACHE ?? resolve('node_modules/.cache/tsserve-tests'));
  // stripTypeScriptTypes says it is experimental, once: not news in the suite's output.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    for (const root of ['src', 'test', 'handlers']) {
      for (const file of readdirSync(root, { recursive: true })) {
        if (!file.endsWith('.ts') || file.endsWith('.d.ts') || file.includes('node_modules')) continue;
        const path = resolve(root, file);
        strippedSource(dir, pathToFileURL(path).href, readFileSync(path, 'utf8'));
      }
    }
  } finally {
    process.emitWarning = emitWarning;
  }
}

/**
 * Node's compile cache (test/resolve-ts.mjs), filled by one process before the suite with the
 * modules nearly every test file's process loads (tap), or the servers and workers they start
 * (the CLI's, the handler runner's, onnxruntime-node, sharp): cold, as in a fresh clone, each of
 * the suite's first processes compiled them at once (npm test 8 s longer on Node 24).
 */
async function warmCompileCache() {
  const modules = ['tap', './dist/src/cli/tsserve.js', './dist/src/handler/run.js', 'onnxruntime-node', 'sharp'];
  const code = modules.map((m) => `await import(${JSON.stringify(m)});`).join('\n');
  // This Node.js, whatever `node` PATH finds first: the cache is kept per version.
  const warm = [process.execPath, ['--import', './test/resolve-ts.mjs', '--input-type=module', '-e', code]];
  const result = await run(warm);
  // Only the suite's speed depends on it: a failure is said, and the suite runs all the same.
  if (result.status !== 0) report(['node', ['(compile cache warm-up)']], result);
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
if (keepsStripped) fillStrippedCache();
await warmCompileCache();
// The test files' processes skip tap's file recorder (test/skip-processinfo.mjs says why).
const skipProcessinfo = `--import=${pathToFileURL('test/skip-processinfo.mjs').href}`;
const env = { ...process.env, NODE_OPTIONS: `${skipProcessinfo} ${process.env.NODE_OPTIONS ?? ''}`.trim() };
const suite = await run(['tap', process.argv.slice(2)], { streamed: true, env });
const results = await Promise.all(checks);
for (const [i, result] of results.entries()) report(CHECKS[i], result);
process.exitCode = suite.status === 0 && results.every((r) => r.status === 0) ? 0 : 1;

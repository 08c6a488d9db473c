#!/usr/bin/env node
// What tracing costs the front end, in instructions, which other processes' load does not
// change. Each server's front end runs under valgrind's callgrind (its worker, forked, runs
// natively), serving model-store/mnist.mar with one worker as bench/tracing.mjs's servers do:
//     base     the code of --base-rev (default 2f7059e, main before traces and histograms)
//     before   with --before-rev (main, say): that code at 100% sampling
//     off      this checkout, tracing off (the default)
//     sampled  this checkout, every prediction's spans exported over OTLP/HTTP to a receiver here
// After --warm-up predictions (V8's optimised code), callgrind's counts are zeroed, --predictions
// more are sent by --connections autocannon connections, and the counts dumped: the front end's
// instructions per answer (its own thread and V8's and libuv's helpers: the garbage collector,
// the exporter's HTTP, all of it). Instructions are not CPU time (a cache miss costs more than
// an add). And callgrind slows the front end ~50x but not its worker or the wall clock: batches
// and exports (timer-driven) hold fewer predictions than in a real server, so tracing's figure
// here is its worst case, and what the timers and the garbage collector do moves it between runs
// (18% in bench/results/20261206-2231-tracing-instructions.txt): a first step, not yet the
// fine measure it was meant to be. Servers run one after another; each takes minutes.
//
//   node bench/tracing-instructions.mjs [--predictions 3000] [--warm-up 1500] [--connections 16] [--base-rev 2f7059e] [--before-rev main]
//                                       [--only off,sampled] [--keep <path prefix for the callgrind dumps>]
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { checkoutOf, otlpReceiver, userServer } from './lib.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    predictions: { type: 'string', default: '3000' },
    'warm-up': { type: 'string', default: '1500' },
    connections: { type: 'string', default: '16' },
    'base-rev': { type: 'string', default: '2f7059e' },
    'before-rev': { type: 'string' },
    only: { type: 'string' },
    keep: { type: 'string' },
  },
});
const BODY = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();

const checkout = (rev) => checkoutOf(ROOT, rev);

async function until(check, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function predict(url, amount) {
  return autocannon({ url, method: 'POST', body: BODY, headers: { 'content-type': 'image/png' }, connections: Number(opts.connections), amount, timeout: 120 });
}

/**
 * Asks callgrind in process `pid` to `command` (--zero, --dump). Its vgdb pipes are in the
 * server's TMPDIR, `dir`, where callgrind_control must look for them.
 */
function control(dir, command, pid) {
  const said = execFileSync('callgrind_control', [command, String(pid)], { encoding: 'utf8', env: { ...process.env, TMPDIR: dir } });
  if (!said.includes('OK')) throw new Error(`callgrind_control ${command} ${pid}: ${said}`);
  return said;
}

/** The instructions counted since the zero, once callgrind has written its dump (callgrind.out.1) in `dir`. */
async function dumped(dir, said) {
  let files = [];
  for (let i = 0; i < 120; i++) {
    files = readdirSync(dir).filter((f) => /^callgrind\.out\.\d+$/.test(f));
    for (const f of files) {
      const summary = /^summary: (\d+)/m.exec(readFileSync(join(dir, f), 'utf8'));
      if (summary) {
        // For callgrind_annotate: where the instructions went.
        if (opts.keep) copyFileSync(join(dir, f), `${opts.keep}.${dir.split('-cg-')[1]}`);
        return Number(summary[1]);
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`no callgrind dump in ${dir} (${readdirSync(dir).join(' ')}); callgrind_control said: ${said}`);
}

/** Instructions (callgrind's Ir) of the front end of the checkout at `root`, per answer. */
async function instructionsPerAnswer(name, root, env) {
  const server = await userServer(`tsserve-bench-cg-${name}-`, ['default_workers_per_model=1'], { root, env });
  copyFileSync(join(ROOT, 'model-store/mnist.mar'), join(server.store, 'mnist.mar'));
  const out = join(server.dir, 'callgrind.out');
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      `--callgrind-out-file=${out}`,
      process.execPath,
      join(root, 'bin/tsserve.js'),
      '--start',
      '--foreground',
      '--model-store',
      'model-store',
      '--disable-token-auth',
      '--ncs',
      '--models',
      'mnist=mnist.mar',
    ],
    { cwd: server.dir, env: { ...process.env, ...env, TMPDIR: server.dir }, stdio: 'ignore' },
  );
  const exited = new Promise((resolve) => child.on('exit', resolve));
  try {
    await until(
      async () => (await (await fetch(`${server.management}/models/mnist`)).json())[0].workers.some((w) => w.status === 'READY'),
      900_000,
      `${name} ready`,
    );
    const url = `${server.inference}/predictions/mnist`;
    await predict(url, Number(opts['warm-up']));
    control(server.dir, '--zero', child.pid);
    const began = performance.now();
    const result = await predict(url, Number(opts.predictions));
    const seconds = (performance.now() - began) / 1000;
    const said = control(server.dir, '--dump', child.pid);
    const instructions = await dumped(server.dir, said);
    const answers = result['2xx'];
    return { name, instructions: instructions / answers, answers, notOk: result.non2xx + result.errors + result.timeouts, seconds };
  } finally {
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 60_000))]);
    child.kill('SIGKILL');
    server.remove();
  }
}

const otlp = await otlpReceiver();
const sampledEnv = { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'always_on' };
const plan = [
  ['base', () => checkout(opts['base-rev']), {}],
  ...(opts['before-rev'] ? [['before', () => checkout(opts['before-rev']), sampledEnv]] : []),
  ['off', () => ROOT, {}],
  ['sampled', () => ROOT, sampledEnv],
].filter(([name]) => !opts.only || opts.only.split(',').includes(name));
const before = uptime();
const results = [];
try {
  for (const [name, root, env] of plan) {
    const dir = root();
    try {
      const r = await instructionsPerAnswer(name, dir, env);
      results.push(r);
      console.log(
        `${name.padEnd(8)} ${(r.instructions / 1e6).toFixed(3)} M instructions per answer (${r.answers} answers${r.notOk ? `, ${r.notOk} not 200` : ''}, ${r.seconds.toFixed(0)} s)`,
      );
    } finally {
      if (dir !== ROOT) rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  otlp.close();
}
const base = results.find((r) => r.name === 'base');
const off = results.find((r) => r.name === 'off');
const pct = (a, b) => `${a >= b ? '+' : ''}${((a / b - 1) * 100).toFixed(2)}%`;
for (const r of results) {
  const against = [
    base && r !== base && `${pct(r.instructions, base.instructions)} vs base`,
    off && r.name === 'sampled' && `${pct(r.instructions, off.instructions)} vs off`,
    r.name === 'sampled' &&
      results.find((x) => x.name === 'before') &&
      `${pct(r.instructions, results.find((x) => x.name === 'before').instructions)} vs before`,
  ].filter(Boolean);
  if (against.length > 0) console.log(`${r.name.padEnd(8)} ${against.join(', ')}`);
}
console.log(`OTLP exports received: ${otlp.counts.exports}, ${(otlp.counts.bytes / 1e6).toFixed(1)} MB`);
console.log(`uptime before: ${before}\nuptime after:  ${uptime()}`);

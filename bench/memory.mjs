#!/usr/bin/env node
// What a loaded model costs in memory, and what each way of cutting it costs in speed.
//
//   node bench/memory.mjs [--models DIR] [--count 8] [--processes 6] [--runs 200] [--only NAME,...]
//
// Each variant runs in a fresh node process of its own (`--child`), which imports
// onnxruntime-node, opens the same model --count times with the variant's session options, runs
// each session once (the arena and memory patterns grow on the first run), then times --runs
// single-sample runs of the first session. Each of the --count models is a copy of the model's
// file of its own, so that nothing is shared between them that distinct models would not share.
// The parent reads the child's PSS from /proc/<pid>/smaps_rollup at each step: the process with
// nothing open, after the first model, after the last; "per additional model" is the slope
// between them; and the CPU time per run (steadier than the wall time on a shared machine). The
// process-per-model lines (one worker process per model, as tsserve runs them) start --processes
// children of one session each at once and divide their summed PSS, so shared library pages are
// split as they are among workers. Models: mnist (examples/mnist/mnist.onnx) and resnet18 from --models (the shared
// bench's make_models.py output; skipped if absent). Results are printed and appended as JSON
// lines to bench/results/memory-<stamp>.jsonl with the load average.
import { spawn } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { mallocReturningMemory } from '../dist/src/workers/worker-process.js';
import { median } from './lib.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    child: { type: 'string' },
    models: { type: 'string', default: '/tmp/i33mem/models' },
    count: { type: 'string', default: '8' },
    processes: { type: 'string', default: '6' },
    runs: { type: 'string', default: '200' },
    only: { type: 'string' },
  },
});

// Today's options (src/runtime/onnx.ts before issue 33): the worker's share of the threads, no
// spinning, every graph optimisation, the CPU arena and memory patterns on (onnxruntime's defaults).
const TODAY = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
};
const withConfig = (entries) => ({ ...TODAY, extra: { session: { ...TODAY.extra.session, ...entries } } });

/** name -> how the child opens each model: options, a second wide session (adaptiveThreads), bytes or path. */
const VARIANTS = {
  today: { options: TODAY },
  'arena-off': { options: { ...TODAY, enableCpuMemArena: false } },
  'pattern-off': { options: { ...TODAY, enableMemPattern: false } },
  'arena-pattern-off': { options: { ...TODAY, enableCpuMemArena: false, enableMemPattern: false } },
  'opt-extended': { options: { ...TODAY, graphOptimizationLevel: 'extended' } },
  'opt-basic': { options: { ...TODAY, graphOptimizationLevel: 'basic' } },
  'prepack-off': { options: withConfig({ disable_prepacking: '1' }) },
  'from-buffer': { options: TODAY, bytes: true },
  'buffer-for-initializers': {
    options: withConfig({ use_ort_model_bytes_directly: '1', use_ort_model_bytes_for_initializers: '1' }),
    bytes: true,
  },
  'two-threads': { options: { ...TODAY, intraOpNumThreads: 2 } },
  'adaptive-today': { options: TODAY, wide: 2 },
  'adaptive-arena-off': { options: { ...TODAY, enableCpuMemArena: false }, wide: 2 },
  'adaptive-prepack-off': { options: withConfig({ disable_prepacking: '1' }), wide: 2 },
  'adaptive-arena-pattern-off': { options: { ...TODAY, enableCpuMemArena: false, enableMemPattern: false }, wide: 2 },
  // glibc malloc's mmap threshold fixed (MALLOC_MMAP_THRESHOLD_), as tsserve's workers now run.
  'malloc-fixed': { options: TODAY, malloc: true },
  'adaptive-malloc-fixed': { options: TODAY, wide: 2, malloc: true },
  // tsserve's createSession as it is now (dist/, so build first) in a worker's environment:
  // with and without adaptiveThreads.
  tsserve: { tsserve: true, malloc: true },
  'tsserve-adaptive': { tsserve: true, wide: 2, malloc: true },
};

if (opts.child !== undefined) await child(JSON.parse(opts.child));
else await parent();

// ---- the child: one variant in a process of its own ----

async function child({ models, variant, runs }) {
  const count = models.length;
  const ort = await import('onnxruntime-node');
  const { options, wide, bytes, tsserve } = VARIANTS[variant];
  const lines = createInterface({ input: process.stdin });
  const next = lines[Symbol.asyncIterator]();
  const step = async (stage, extra = {}) => {
    process.stdout.write(`${JSON.stringify({ stage, ...extra })}\n`);
    await next.next(); // the parent has read our PSS
  };
  const open = await opener(ort, { options, wide, bytes, tsserve });
  await step('empty');
  const sessions = [];
  let openMs;
  for (let i = 0; i < count; i++) {
    const began = performance.now();
    const opened = await open(models[i]);
    openMs ??= performance.now() - began;
    for (const s of opened) await s.run(feeds(ort, s));
    sessions.push(opened);
    if (i === 0 || i === count - 1) await step('loaded', { models: i + 1 });
  }
  const first = sessions[0][0];
  const input = feeds(ort, first);
  const out = await first.run(input);
  const ms = [];
  const cpu = process.cpuUsage();
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await first.run(input);
    ms.push(performance.now() - t);
  }
  const { user, system } = process.cpuUsage(cpu);
  const output = out[first.outputNames[0]].data;
  await step('timed', { msMedian: median(ms), cpuMsPerRun: (user + system) / 1000 / runs, openMs, checksum: Array.from(output.slice(0, 4)) });
  lines.close(); // stdin would keep the process alive
}

/** A function opening the model once more: its session(s), two for adaptiveThreads (`wide`). */
async function opener(ort, { options, wide, bytes, tsserve }) {
  if (tsserve) {
    process.env.TSSERVE_INTRA_OP_THREADS = '1';
    if (wide) process.env.TSSERVE_WIDE_INTRA_OP_THREADS = String(wide);
    const { createSession } = await import('../dist/src/runtime/onnx.js');
    return async (model) => [await createSession(model)];
  }
  const one = (model, threads) => ort.InferenceSession.create(bytes ? new Uint8Array(readFileSync(model)) : model, { ...options, intraOpNumThreads: threads });
  return async (model) => (wide ? [await one(model, options.intraOpNumThreads), await one(model, wide)] : [await one(model, options.intraOpNumThreads)]);
}

/** One sample of the model's first input: fixed values, so every variant sees the same input. */
function feeds(ort, session) {
  const meta = session.inputMetadata[0];
  const dims = meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  const data = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => ((i * 7919) % 255) / 255);
  return { [session.inputNames[0]]: new ort.Tensor('float32', data, dims) };
}

// ---- the parent: each variant in its own process, PSS read from outside ----

async function parent() {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').slice(0, 13);
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  const out = join(ROOT, 'bench', 'results', `memory-${stamp}.jsonl`);
  const models = { mnist: join(ROOT, 'examples/mnist/mnist.onnx'), resnet18: join(opts.models, 'resnet18.onnx') };
  const only = opts.only?.split(',');
  for (const [name, path] of Object.entries(models)) {
    if (!existsSync(path)) {
      console.log(`${name}: ${path} absent, skipped`);
      continue;
    }
    const count = name === 'mnist' ? Number(opts.count) : 2;
    const runs = name === 'mnist' ? Number(opts.runs) : Math.ceil(Number(opts.runs) / 10);
    for (const variant of Object.keys(VARIANTS)) {
      if (only && !only.includes(variant)) continue;
      const r = await measure(path, count, variant, runs);
      report(out, { model: name, variant, ...r });
    }
    for (const variant of ['today', 'tsserve']) {
      if (!only || only.includes(`process-per-model-${variant}`)) {
        report(out, { model: name, variant: `process-per-model-${variant}`, ...(await perProcess(path, variant)) });
      }
    }
  }
}

function report(out, row) {
  const line = { ...row, loadavg1: Number(loadavg()[0].toFixed(2)), at: new Date().toISOString() };
  appendFileSync(out, `${JSON.stringify(line)}\n`);
  console.log(JSON.stringify(line));
}

/** One child through its steps; PSS in MB at each. */
async function measure(model, count, variant, runs) {
  const { proc, steps } = startChild(model, count, variant, runs);
  const pss = {};
  let timed;
  for await (const s of steps) {
    if (s.stage === 'empty') pss.empty = pssMb(proc.pid);
    if (s.stage === 'loaded') pss[s.models] = pssMb(proc.pid);
    if (s.stage === 'timed') timed = s;
    proc.stdin.write('\n');
  }
  const firstModelMb = pss[1] - pss.empty;
  const perAdditionalMb = count > 1 ? (pss[count] - pss[1]) / (count - 1) : undefined;
  return {
    processEmptyMb: round(pss.empty),
    firstModelMb: round(firstModelMb),
    perAdditionalModelMb: round(perAdditionalMb),
    models: count,
    runMsMedian: round(timed?.msMedian, 3),
    cpuMsPerRun: round(timed?.cpuMsPerRun, 3),
    firstOpenMs: round(timed?.openMs, 0),
    checksum: timed?.checksum,
  };
}

/** One worker process per model: --processes children of one session each, alive at once; their summed PSS per child. */
async function perProcess(model, variant) {
  const n = Number(opts.processes);
  const children = Array.from({ length: n }, () => startChild(model, 1, variant, 1));
  const iterators = children.map((c) => c.steps[Symbol.asyncIterator]());
  // Walk every child to its loaded step, then measure them together.
  for (const [i, it] of iterators.entries()) {
    for (;;) {
      const { value } = await it.next();
      if (value.stage === 'loaded') break;
      children[i].proc.stdin.write('\n');
    }
  }
  const total = children.reduce((sum, c) => sum + pssMb(c.proc.pid), 0);
  for (const c of children) c.proc.stdin.end();
  await Promise.all(children.map((c) => new Promise((r) => c.proc.once('exit', r))));
  return { processes: n, perProcessMb: round(total / n) };
}

/** A child opening `count` copies of `model` (made in a temporary folder, removed when it ends). */
function startChild(model, count, variant, runs) {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-memory-'));
  const models = Array.from({ length: count }, (_, i) => {
    const copy = join(dir, `${i}-${basename(model)}`);
    copyFileSync(model, copy);
    return copy;
  });
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify({ models, variant, runs })], {
    env: VARIANTS[variant].malloc ? mallocReturningMemory(process.env) : process.env,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  proc.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const steps = (async function* () {
    for await (const line of createInterface({ input: proc.stdout })) yield JSON.parse(line);
  })();
  return { proc, steps };
}

function pssMb(pid) {
  const kb = Number(/Pss:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  return kb / 1024;
}

function round(x, digits = 1) {
  return x === undefined ? undefined : Number(x.toFixed(digits));
}

#!/usr/bin/env node
// Many models on one machine: how long they take to be ready, what each costs in memory and at idle.
//
//   node bench/density.mjs [--small 50] [--large 5] [--parallel 4] [--idle-seconds 10]
//
// Starts `tsserve --start` with no model (free 127.0.0.1 ports, a temporary folder), then
// registers --small copies of an mnist-sized archive (examples/mnist, 1.2 MB of weights) and
// --large copies of a resnet18-sized one (the shared bench's seeded resnet18.onnx, 47 MB, with
// image_classifier), each with one worker, --parallel registrations at a time. Reports: the time
// from the first registration to the last model READY; that every model answers a prediction;
// the process tree's PSS (shared pages of node and onnxruntime counted once) at the start and
// after every tenth small model, and the PSS each additional worker adds (the slope); and the
// CPU the whole tree uses over --idle-seconds of idling, per model.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { createArchive } from '../dist/src/archive/write.js';
import { treePssMb, userServer } from './lib.mjs';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SHARED = process.env.SHARED_BENCH ?? join(ROOT, '..', 'shared', 'bench');
const { values: opts } = parseArgs({
  options: {
    small: { type: 'string', default: '50' },
    large: { type: 'string', default: '5' },
    parallel: { type: 'string', default: '4' },
    'idle-seconds': { type: 'string', default: '10' },
  },
});

// Registering models through the API is off by default, as in TorchServe.
const server = await userServer('tsserve-density-', ['enable_model_api=true']);
const { store } = server;
await run('/usr/bin/python3', [join(SHARED, 'make_models.py'), join(server.dir, 'models')]);
createArchive({
  modelName: 'small',
  version: '1.0',
  exportPath: store,
  force: true,
  serializedFile: join(ROOT, 'examples/mnist/mnist.onnx'),
  handler: join(ROOT, 'examples/mnist/mnist_handler.ts'),
});
createArchive({
  modelName: 'large',
  version: '1.0',
  exportPath: store,
  force: true,
  serializedFile: join(server.dir, 'models', 'resnet18.onnx'),
  handler: 'image_classifier',
});
const digit = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
const photo = readFileSync(join(SHARED, 'images', 'photo.jpg'));

try {
  await server.start([]);
  const pid = server.pid();
  const pss = [[0, treePssMb(pid)]];
  const small = Array.from({ length: Number(opts.small) }, (_, i) => `small${i + 1}`);
  const large = Array.from({ length: Number(opts.large) }, (_, i) => `large${i + 1}`);

  const began = performance.now();
  await registerAll(small, 'small.mar', (done) => {
    if (done % 10 === 0) pss.push([done, treePssMb(pid)]);
  });
  const smallReadyS = (performance.now() - began) / 1000;
  const smallAnswers = await answers(small, digit);
  const idle = await idleCpu(pid, Number(opts['idle-seconds']));

  const beforeLarge = treePssMb(pid);
  const largeBegan = performance.now();
  await registerAll(large, 'large.mar', () => undefined);
  const largeReadyS = (performance.now() - largeBegan) / 1000;
  const largeAnswers = await answers(large, photo);
  const afterLarge = treePssMb(pid);

  const [n0, p0] = pss[1] ?? pss[0];
  const [n1, p1] = pss[pss.length - 1];
  console.log(
    `${small.length} small models (1 worker each): all READY ${smallReadyS.toFixed(1)} s after the first registration; ${smallAnswers}/${small.length} answered`,
  );
  console.log(`  process tree PSS, MB, by models registered: ${pss.map(([n, mb]) => `${n}: ${mb}`).join(', ')}`);
  console.log(
    `  PSS per additional small model's worker (slope ${n0} -> ${n1}): ${((p1 - p0) / (n1 - n0)).toFixed(1)} MB; ` +
      `whole tree ${p1} MB, ${(p1 / small.length).toFixed(1)} MB per model including the server`,
  );
  console.log(`  idle, ${opts['idle-seconds']} s: the tree used ${idle.toFixed(1)}% of one core, ${(idle / small.length).toFixed(3)}% per model`);
  console.log(
    `${large.length} large models (resnet18, 1 worker each): all READY ${largeReadyS.toFixed(1)} s; ${largeAnswers}/${large.length} answered; ` +
      `PSS +${afterLarge - beforeLarge} MB, ${((afterLarge - beforeLarge) / large.length).toFixed(1)} MB per model`,
  );
} finally {
  await server.stop();
  server.remove();
}

/** Registers each name from `archive` with one worker, --parallel at a time, synchronously. */
async function registerAll(names, archive, onDone) {
  let next = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: Number(opts.parallel) }, async () => {
      while (next < names.length) {
        const name = names[next++];
        const res = await fetch(`${server.management}/models?url=${archive}&model_name=${name}&initial_workers=1&synchronous=true`, { method: 'POST' });
        if (res.status !== 200) throw new Error(`${name}: ${res.status} ${await res.text()}`);
        onDone(++done);
      }
    }),
  );
}

async function answers(names, body) {
  const statuses = await Promise.all(
    names.map((name) =>
      fetch(`${server.inference}/predictions/${name}`, { method: 'POST', body }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      }),
    ),
  );
  return statuses.filter((s) => s === 200).length;
}

/** CPU time of the whole process tree over `seconds` of nothing to do, in % of one core. */
async function idleCpu(root, seconds) {
  const before = treeCpuTicks(root);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  return ((treeCpuTicks(root) - before) / 100 / seconds) * 100;
}

function treeCpuTicks(root) {
  const stats = new Map();
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ');
      stats.set(Number(entry), { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      /* ended */
    }
  }
  let ticks = 0;
  for (const stack = [root]; stack.length > 0; ) {
    const p = stack.pop();
    ticks += stats.get(p)?.ticks ?? 0;
    for (const [child, s] of stats) if (s.ppid === p) stack.push(child);
  }
  return ticks;
}

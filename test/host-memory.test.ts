// What the memory budget reads of a shared worker host (workers/worker-host.ts), on a real host
// process: its PSS as the budget sees it (the last smaps_rollup reading plus the growth of its
// anonymous memory since) against the kernel's PSS read at the same moment, while models that
// hold memory load into it; what each load added; and that after its first reading the front end
// reads smaps_rollup only off the event loop (it walks every page of the process: read on the
// event loop for every host at every memory decision, it held the front end ~48 ms a load in
// bench/many-models.mjs). And that a worker's niceness (worker_nice, set as it spawns) covers every
// thread of it, also threads started before it is set, not only its main thread, which is all that
// setpriority on its pid changes on Linux.
import fs, { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { WorkerHost, yieldToFrontEnd } from '../dist/src/workers/worker-host.js';
import { WorkerProcess } from '../dist/src/workers/worker-process.js';
import type { LoadMessage } from '../dist/src/protocol/messages.js';
import { tempDir } from './helpers.js';

const MB = 2 ** 20;
/** What each test model's module holds once imported: written, so every page is resident. */
const HELD_MB = 24;

function sharedHost(t: Test, nice = 0): WorkerHost {
  const host = new WorkerHost({
    intraOpThreads: 1,
    wideIntraOpThreads: undefined,
    nice,
    permissionDir: undefined,
    env: process.env,
    shared: true,
    maxResponseSize: 10 * MB,
    onOutput: () => {},
  });
  t.teardown(() => host.kill());
  return host;
}

/** A model directory whose handler module holds HELD_MB of written memory. */
function holdingModel(root: string, name: string): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'hold.mjs'),
    `export const held = Buffer.alloc(${HELD_MB * MB}, 7);\nexport async function handle(batch) { return batch === null ? null : batch.map(() => held.length); }\n`,
  );
  return dir;
}

function loadInto(host: WorkerHost, id: string, dir: string): WorkerProcess {
  const load: LoadMessage = {
    kind: 'load',
    key: id,
    modelName: `m${id}`,
    modelDir: dir,
    manifest: { runtime: 'javascript', model: { modelName: `m${id}`, modelVersion: '1.0', handler: 'hold.mjs' } },
    handler: 'hold.mjs',
    batchSize: 1,
    yamlConfig: {},
    decodeInput: true,
    limitMaxImagePixels: true,
    envelope: undefined,
    sequenceIdHeader: 'ts_request_sequence_id',
    serverVersion: 'test',
    largestBatch: 1,
    maxResponseSize: 10 * MB,
  } as LoadMessage;
  return new WorkerProcess({
    id,
    load,
    hosts: { hostFor: () => host },
    intraOpThreads: 1,
    wideIntraOpThreads: undefined,
    startupTimeoutMs: 60_000,
    responseTimeoutMs: 60_000,
    nice: 0,
    permission: false,
    env: process.env,
    onOutput: () => {},
    onMetrics: () => {},
    onBatchHandled: () => {},
  });
}

function kernelPss(pid: number): number {
  return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'))![1]) * 1024;
}

/** Counts the synchronous reads of `/proc/<pid>/smaps_rollup` anyone in this process makes, until the test ends. */
function countSyncSmapsReads(t: Test, pid: number): { count: number } {
  const reads = { count: 0 };
  const original = fs.readFileSync;
  const counting = ((path: fs.PathOrFileDescriptor, options?: unknown) => {
    if (String(path) === `/proc/${pid}/smaps_rollup`) reads.count++;
    return original(path, options as BufferEncoding);
  }) as typeof fs.readFileSync;
  fs.readFileSync = counting;
  syncBuiltinESMExports();
  t.teardown(() => {
    fs.readFileSync = original;
    syncBuiltinESMExports();
  });
  return reads;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test('a host PSS as the budget reads it follows the kernel while models load, and each load counts what it added', async (t) => {
  const host = sharedHost(t);
  const root = tempDir(t);
  // The first load into a host adds more (the handler machinery, the module hooks' thread): it is
  // the reading after it that the later loads are measured from.
  const workers = [loadInto(host, '1', holdingModel(root, 'model1'))];
  await workers[0]!.start();
  const first = host.residentBytes();
  t.ok(first !== undefined && first > HELD_MB * MB, `the host with one model: ${((first ?? 0) / MB).toFixed(1)} MB`);
  for (const id of ['2', '3']) {
    const worker = loadInto(host, id, holdingModel(root, `model${id}`));
    await worker.start();
    workers.push(worker);
    const added = worker.loadBytes ?? 0;
    t.ok(added >= (HELD_MB - 1) * MB && added < (HELD_MB + 8) * MB, `worker ${id}'s load added ${(added / MB).toFixed(1)} MB (its module holds ${HELD_MB})`);
  }
  const seen = host.residentBytes()!;
  const truth = kernelPss(host.pid);
  t.ok(Math.abs(seen - truth) < 6 * MB, `the budget's ${(seen / MB).toFixed(1)} MB against the kernel's ${(truth / MB).toFixed(1)} MB`);
  const split = workers.reduce((sum, w) => sum + (w.residentBytes() ?? 0), 0);
  t.ok(Math.abs(split - seen) < MB, `its workers' shares add up to it: ${(split / MB).toFixed(1)} MB`);
});

t.test("after a host's first reading, smaps_rollup is read off the event loop", async (t) => {
  const host = sharedHost(t);
  t.ok(host.residentBytes() !== undefined, 'the first reading');
  const reads = countSyncSmapsReads(t, host.pid);
  // Past the reuse of the old reading (500 ms), each look read it again, synchronously.
  for (let i = 0; i < 3; i++) {
    await sleep(600);
    t.ok(host.residentBytes() !== undefined, `look ${i + 1} has a figure`);
  }
  const worker = loadInto(host, '9', holdingModel(tempDir(t), 'model9'));
  await worker.start();
  t.ok(host.residentBytes() !== undefined, 'and one after a load');
  t.equal(reads.count, 0, 'no synchronous read of smaps_rollup');
});

/** Each thread's niceness, from /proc/<pid>/task/<tid>/stat (field 19; the name, in parentheses, may hold spaces). */
function threadNiceness(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

/** Until Node's own threads (V8's platform workers and others), started with the process, are there. */
async function threadsStarted(t: Test, pid: number): Promise<void> {
  for (let i = 0; i < 100 && threadNiceness(pid).length < 3; i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(threadNiceness(pid).length >= 3, `${threadNiceness(pid).length} threads`);
}

t.test("a worker's niceness covers every thread of it", { skip: process.platform !== 'linux' && 'Linux keeps niceness per thread' }, async (t) => {
  const nice = Math.min(19, getPriority() + 5);
  const spawned = sharedHost(t, 5);
  await threadsStarted(t, spawned.pid);
  t.same(new Set(threadNiceness(spawned.pid)), new Set([nice]), 'set as it spawns: every thread has it');
  // Set where Node's threads run already (at its spawn a race): before, only the main thread had it.
  const running = sharedHost(t);
  await threadsStarted(t, running.pid);
  yieldToFrontEnd(running.pid, 5);
  t.same(new Set(threadNiceness(running.pid)), new Set([nice]), 'set once its threads run: every thread has it');
});

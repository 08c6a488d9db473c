// The pool's scheduling on workers that are stand-ins: each batch waits until the test ends it,
// so what the pool sent, and when, is read off exactly (no processes, no clocks).
import { EventEmitter } from 'node:events';
import t, { type Test } from 'tap';
import { tsError } from '../errors.js';
import type { BatchOutcome, WorkerProcess } from './worker-process.js';
import { Job } from '../batching/job.js';
import { JobQueue } from '../batching/job-queue.js';
import { WorkerPool, type PoolSettings } from './worker-pool.js';
import type { WorkerState } from './worker-state.js';

/** A worker whose batches run until `end` is called: in order, as a worker process runs them. */
class StandInWorker extends EventEmitter {
  state: WorkerState = 'STARTED';
  readonly pid = 1;
  exited = false;
  readonly batches: Array<{ jobs: Job[]; settle: (outcome: BatchOutcome) => void }> = [];

  get busy(): boolean {
    return this.batches.length > 0;
  }

  start(): Promise<void> {
    this.state = 'MODEL_LOADED';
    return Promise.resolve();
  }

  runBatch(jobs: Job[]): Promise<BatchOutcome> {
    return new Promise((settle) => this.batches.push({ jobs, settle }));
  }

  /** The first batch in line answers, having taken the worker `workMs` of its own time. */
  end(workMs = 1): void {
    const batch = this.batches.shift();
    for (const job of batch?.jobs ?? []) job.respond({ status: 200, phrase: 'OK', headers: {}, body: new Uint8Array() });
    batch?.settle({ unstarted: [], workMs });
  }

  /** Dies as a process does: the batch it was on fails, those behind it come back unstarted. */
  kill(): void {
    const [running, ...waiting] = this.batches.splice(0);
    for (const job of running?.jobs ?? []) job.fail(tsError('TSS_ERR_WORKER_DIED'));
    running?.settle({ unstarted: [], workMs: undefined });
    for (const batch of waiting) batch.settle({ unstarted: batch.jobs, workMs: undefined });
    this.exited = true;
    this.state = 'STOPPED';
    this.emit('exit', null, 'SIGKILL');
  }

  moveTo(state: WorkerState): void {
    this.state = state;
  }
}

const SETTINGS: PoolSettings = {
  batchSize: 2,
  maxBatchDelay: 0,
  takeQueued: 1,
  maxRetryTimeoutInSec: 0,
  adaptiveThreads: false,
  minWorkers: 0,
  maxWorkers: 0,
  scaling: { waitingPerWorker: 2, upDelayMs: 1000, downDelayMs: 1000 },
};

function pool(t: Test, workers: number): { queue: JobQueue; stand: StandInWorker[]; ready: Promise<unknown>; pool: WorkerPool } {
  const queue = new JobQueue(100);
  const stand: StandInWorker[] = [];
  const p = new WorkerPool(queue, () => SETTINGS, {
    spawn: () => {
      const w = new StandInWorker();
      stand.push(w);
      return w as unknown as WorkerProcess;
    },
    onRestart: () => {},
    onBatch: () => {},
    log: () => {},
  });
  t.teardown(() => p.close());
  return { queue, stand, ready: p.scale(workers, workers), pool: p };
}

const ids = (jobs: Job[]): string[] => jobs.map((j) => j.id);
const job = (id: string): Job => new Job({ id, headers: {}, params: [] }, { intermediate: () => {}, respond: () => {}, fail: () => {} });
/** Lets the pool's loops run to their next wait. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('no batch ahead before a batch time is known; then full batches ahead, woken by each job', async (t) => {
  const { queue, stand, ready } = pool(t, 1);
  await ready;
  const [worker] = stand;
  queue.enqueue(job('a'));
  await settle();
  t.same(
    worker!.batches.map((b) => ids(b.jobs)),
    [['a']],
    'an idle worker takes what there is',
  );
  for (const id of ['b', 'c']) queue.enqueue(job(id));
  await settle();
  t.equal(worker!.batches.length, 1, 'a full batch waits, but the batch time is not known yet');
  worker!.end();
  await settle();
  t.same(
    worker!.batches.map((b) => ids(b.jobs)),
    [['b', 'c']],
    'the next batch, once it was free',
  );
  worker!.end();
  await settle();
  queue.enqueue(job('d'));
  await settle();
  for (const id of ['e', 'f', 'g', 'h']) queue.enqueue(job(id));
  await settle();
  t.same(
    worker!.batches.map((b) => ids(b.jobs)),
    [['d'], ['e', 'f'], ['g', 'h']],
    'busy with d, it took the full batches behind it as they arrived',
  );
  t.equal(queue.size, 4, 'which still count as waiting until answered');
  queue.enqueue(job('i'));
  await settle();
  t.equal(worker!.batches.length, 3, 'never a partial batch ahead');
});

t.test("batches ahead are counted in the worker's own time on a batch, not the round trip", async (t) => {
  /** Batches held ahead while busy, by a worker whose batches take `workMs` after one of `firstMs`. */
  const heldWhileBusy = async (firstMs: number, workMs: number): Promise<number> => {
    const { queue, stand, ready } = pool(t, 1);
    await ready;
    const [worker] = stand;
    for (const ms of [firstMs, workMs]) {
      // An idle worker's batches of one: their round trip here is a few microseconds.
      queue.enqueue(job(`timed ${ms}`));
      await settle();
      worker!.end(ms);
      await settle();
    }
    queue.enqueue(job('busy'));
    await settle();
    for (let i = 0; i < 40; i++) queue.enqueue(job(String(i)));
    await settle();
    const ahead = worker!.batches.length - 1;
    while (worker!.batches.length > 0) {
      worker!.end(workMs);
      await settle();
    }
    return ahead;
  };
  // The timed batches hold one job of the two a batch may: a full one is reckoned twice as long.
  t.equal(await heldWhileBusy(60, 60), 1, 'a full batch takes the worker 120 ms: one ahead');
  t.equal(await heldWhileBusy(12, 12), 4, '24 ms: four');
  t.equal(await heldWhileBusy(2, 2), 16, '4 ms: sixteen, the most');
  t.equal(await heldWhileBusy(60, 2), 1, 'one quick batch after a slow one: still one');
});

t.test('slow batches: a busy worker takes one ahead only when another full batch is left for each other worker', async (t) => {
  const { queue, stand, ready } = pool(t, 2);
  await ready;
  const workers = stand as [StandInWorker, StandInWorker];
  const held = (): string[][][] => workers.map((w) => w.batches.map((b) => ids(b.jobs)));
  // Both workers learn that a full batch takes them 300 ms (a batch of one of two: 150 ms).
  for (const id of ['a', 'b']) queue.enqueue(job(id));
  await settle();
  for (const w of workers) w.end(150);
  await settle();
  for (const id of ['c', 'd']) queue.enqueue(job(id));
  await settle();
  t.same(held(), [[['c']], [['d']]], 'each busy with a batch');
  for (const id of ['e', 'f']) queue.enqueue(job(id));
  await settle();
  t.same(held(), [[['c']], [['d']]], "one full batch waiting is the first free worker's, not held behind a slow batch");
  for (const id of ['g', 'h']) queue.enqueue(job(id));
  await settle();
  t.same(
    held()
      .flat()
      .map((batch) => batch.join(''))
      .sort(),
    ['c', 'd', 'ef'],
    'with one more behind it for the other worker, one takes a batch ahead',
  );
  const free = workers.find((w) => w.batches.length === 1)!;
  free.end(150);
  await settle();
  t.same(ids(free.batches[0]?.jobs ?? []), ['g', 'h'], 'the other, once free, takes the one left');
  while (workers.some((w) => w.batches.length > 0)) {
    for (const w of workers) w.end(150);
    await settle();
  }
});

t.test('a worker that dies gives back the batches it had not started; another worker takes them', async (t) => {
  const { queue, stand, ready } = pool(t, 2);
  await ready;
  const [first, second] = stand;
  // Both workers time a quick batch (idle workers take turns), so both may take batches ahead.
  for (const id of ['w1', 'w2']) {
    queue.enqueue(job(id));
    await settle();
  }
  first!.end();
  second!.end();
  await settle();
  queue.enqueue(job('a'));
  queue.enqueue(job('b'));
  await settle();
  for (const id of ['c', 'd']) queue.enqueue(job(id));
  await settle();
  const holder = [first!, second!].find((w) => w.batches.length === 2);
  t.ok(holder, 'one worker holds a batch ahead');
  const other = holder === first ? second! : first!;
  t.same(holder!.batches.map((b) => ids(b.jobs)).at(-1), ['c', 'd']);
  other.end();
  await settle();
  holder!.kill();
  await settle();
  t.same(
    other.batches.map((b) => ids(b.jobs)),
    [['c', 'd']],
    'the other worker runs the batch the dead one never started',
  );
  t.equal(queue.size, 0, 'and nothing is left waiting');
});

t.test('a scale-down the close overtakes starts no worker afterwards: a closed pool never spawns again', async (t) => {
  const { stand, ready, pool: p } = pool(t, 3);
  await ready;
  // Down to two waits for the third worker's batch; the close comes meanwhile.
  const scaling = p.scale(2, 2);
  await p.close();
  t.same(await scaling, { ok: true, running: 0 }, 'the scale says nothing runs');
  t.equal(stand.length, 3, 'no worker was started after the close');
  t.same(await p.scale(1, 1), { ok: true, running: 0 }, 'a later scale starts none either');
  t.equal(stand.length, 3);
  t.ok(
    stand.every((w) => w.exited || w.state === 'SCALED_DOWN'),
    'every worker is retired',
  );
});

import t from 'tap';
import { WORKER_STATE_WARNING } from './worker-state.js';
import type { LoadMessage, ToWorker } from '../protocol/messages.js';
import type { WorkerHost } from './worker-host.js';
import { mallocReturningMemory, threadBudget, WorkerProcess, type HostSource } from './worker-process.js';

/** A worker never started: enough to follow its states; with `hosts`, a shared one. */
function unstartedWorker(id: string, hosts?: HostSource): WorkerProcess {
  return new WorkerProcess({
    id,
    ...(hosts ? { hosts } : {}),
    load: { kind: 'load', modelName: 'm', manifest: { model: { modelVersion: '1.0' } } } as LoadMessage,
    intraOpThreads: 1,
    wideIntraOpThreads: undefined,
    startupTimeoutMs: 1000,
    responseTimeoutMs: 1000,
    nice: 0,
    permission: false,
    env: {},
    onOutput: () => {},
    onMetrics: () => {},
    onBatchHandled: () => {},
  });
}

t.test('a state move the table refuses: a known race is ignored, any other is a process warning', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    if (w.name === WORKER_STATE_WARNING) warnings.push(w.message);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const raced = unstartedWorker('9000');
  for (const state of ['MODEL_LOADED', 'MODEL_LOADED', 'STOPPED', 'MODEL_LOADED', 'SCALED_DOWN', 'STOPPED'] as const) raced.moveTo(state);
  t.equal(raced.state, 'SCALED_DOWN', "a repeat, a 'loaded' read after the exit, an exit after the scale-down: ignored");
  const wrong = unstartedWorker('9001');
  wrong.moveTo('MODEL_LOADED');
  wrong.moveTo('STARTED');
  wrong.moveTo('ERROR');
  await new Promise((resolve) => setImmediate(resolve));
  t.same(warnings, ['Worker 9001: no move from MODEL_LOADED to STARTED', 'Worker 9001: no move from MODEL_LOADED to ERROR']);
  t.equal(wrong.state, 'MODEL_LOADED', 'and the state stays');
});

t.test(
  'a worker whose process cannot be had (the spawn throws) ends as one that died at its start: stopped, its exit told, its load failed with why',
  async (t) => {
    const worker = unstartedWorker('9002', {
      hostFor: () => {
        throw new Error('spawn EAGAIN');
      },
    });
    const exits: unknown[] = [];
    worker.on('exit', (code, signal) => exits.push([code, signal]));
    await t.rejects(worker.start(), { message: 'Worker 9002 could not start its process: spawn EAGAIN' });
    t.same(exits, [[null, null]], 'its exit is told once, for the pool to restart it');
    t.equal(worker.state, 'STOPPED');
    t.equal(worker.startFailure, 'spawn EAGAIN');
    t.ok(worker.exited);
  },
);

t.test('each worker gets its share of the cores, at least one thread', async (t) => {
  t.same(threadBudget({ maxWorkers: 1, adaptiveThreads: false }, 4), { intraOpThreads: 4, wideIntraOpThreads: undefined });
  t.same(threadBudget({ maxWorkers: 2, adaptiveThreads: false }, 4), { intraOpThreads: 2, wideIntraOpThreads: undefined });
  t.same(threadBudget({ maxWorkers: 3, adaptiveThreads: false }, 2), { intraOpThreads: 1, wideIntraOpThreads: undefined });
  t.same(threadBudget({ maxWorkers: 0, adaptiveThreads: false }, 2), { intraOpThreads: 2, wideIntraOpThreads: undefined });
});

t.test('adaptiveThreads adds every core for a lone batch, only where that is more than the share', async (t) => {
  t.same(threadBudget({ maxWorkers: 2, adaptiveThreads: true }, 4), { intraOpThreads: 2, wideIntraOpThreads: 4 });
  t.same(threadBudget({ maxWorkers: 4, adaptiveThreads: true }, 2), { intraOpThreads: 1, wideIntraOpThreads: 2 });
  t.same(threadBudget({ maxWorkers: 1, adaptiveThreads: true }, 4), { intraOpThreads: 4, wideIntraOpThreads: undefined }, 'one worker has them all already');
  t.same(threadBudget({ maxWorkers: 2, adaptiveThreads: true }, 1), { intraOpThreads: 1, wideIntraOpThreads: undefined }, 'one core');
});

t.test("malloc's mmap threshold is fixed unless the environment sets any of malloc's tunables", async (t) => {
  t.same(mallocReturningMemory({ PATH: '/bin' }), { PATH: '/bin', MALLOC_MMAP_THRESHOLD_: '131072' });
  for (const own of [{ MALLOC_MMAP_THRESHOLD_: '65536' }, { MALLOC_ARENA_MAX: '2' }, { GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=0' }]) {
    t.same(mallocReturningMemory(own), own, `${Object.keys(own)[0]} set: left as it is`);
  }
});

/**
 * A shared host standing in for a process: it records what it is sent, and holds each load until
 * the test gives it its turn (as WorkerHost.measuredLoad does behind the loads before it).
 */
class HeldHost {
  readonly shared = true;
  readonly connected = true;
  readonly pid = 1;
  readonly sent: ToWorker['kind'][] = [];
  private turns: Array<() => void> = [];
  attach(): void {}
  detach(): void {}
  send(msg: ToWorker): void {
    this.sent.push(msg.kind);
  }
  async measuredLoad(load: () => Promise<void>): Promise<number | undefined> {
    await new Promise<void>((resolve) => this.turns.push(resolve));
    await load();
    return 0;
  }
  giveTurn(): void {
    for (const turn of this.turns.splice(0)) turn();
  }
}

function heldWorker(): { worker: WorkerProcess; host: HeldHost; started: Promise<string> } {
  const host = new HeldHost();
  const worker = unstartedWorker('9100', { hostFor: () => host as unknown as WorkerHost });
  const started = worker.start().then(
    () => 'loaded',
    () => 'failed',
  );
  return { worker, host, started };
}

/** What `started` settled with, or 'pending' after a few turns of the event loop. */
async function outcome(started: Promise<string>): Promise<string> {
  return Promise.race([started, new Promise<string>((resolve) => setTimeout(() => resolve('pending'), 50))]);
}

t.test('a shared worker retired while its load waits its turn: the load is not sent and settles at once', async (t) => {
  const { worker, host, started } = heldWorker();
  worker.moveTo('SCALED_DOWN');
  worker.kill();
  host.giveTurn();
  t.equal(await outcome(started), 'failed', 'its start settles');
  t.notOk(host.sent.includes('load'), 'no load reaches the host');
  t.ok(worker.exited, 'and the worker has exited');
});

t.test('a shared worker retired after its load was sent: its unload reply settles the load', async (t) => {
  const { worker, host, started } = heldWorker();
  host.giveTurn();
  await new Promise((resolve) => setImmediate(resolve));
  t.same(host.sent, ['load'], 'the load was sent');
  worker.moveTo('SCALED_DOWN');
  worker.kill();
  t.same(host.sent, ['load', 'unload'], 'then its unload');
  worker.onMessage({ kind: 'unloaded', key: '9100' });
  t.equal(await outcome(started), 'failed', 'its start settles (no STOPPED move after SCALED_DOWN to wait for)');
});

/** A shared host standing in for a process of 100 MB PSS, whose loads added what the test says. */
class MeasuredHost {
  readonly shared = true;
  readonly connected = true;
  readonly pid = 2;
  private readonly tenants = new Map<string, { loadBytes: number | undefined }>();
  nextLoadBytes = 0;
  get size(): number {
    return this.tenants.size;
  }
  attach(key: string, tenant: { loadBytes: number | undefined }): void {
    this.tenants.set(key, tenant);
  }
  detach(key: string): void {
    this.tenants.delete(key);
  }
  send(): void {}
  residentBytes(): number {
    return 100 * MB;
  }
  addedBytes(): number {
    let bytes = 0;
    for (const t of this.tenants.values()) bytes += t.loadBytes ?? 0;
    return bytes;
  }
  async measuredLoad(): Promise<number> {
    return this.nextLoadBytes;
  }
}

const MB = 2 ** 20;

async function loadedIn(host: MeasuredHost, id: string, loadBytes: number): Promise<WorkerProcess> {
  host.nextLoadBytes = loadBytes;
  const worker = unstartedWorker(id, { hostFor: () => host as unknown as WorkerHost });
  const started = worker.start();
  worker.moveTo('MODEL_LOADED');
  await started;
  return worker;
}

t.test("unloading a shared worker frees what its load added; the host's last frees all it holds", async (t) => {
  const host = new MeasuredHost();
  const a = await loadedIn(host, '9200', 10 * MB);
  const b = await loadedIn(host, '9201', 20 * MB);
  t.equal(a.residentBytes(), 10 * MB + 35 * MB, "a holds its load's 10 MB and half the host's other 70 MB");
  t.equal(a.freedBytes(), 10 * MB, 'unloading it frees only its 10 MB: the rest stays with b');
  t.equal(b.freedBytes(), 20 * MB);
  host.detach('9201');
  t.equal(a.freedBytes(), 100 * MB, "as the host's last worker it frees all the host holds");
});

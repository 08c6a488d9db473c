// The scaler's decisions on a pool that is only numbers, with a clock the test moves: when workers
// are added and stopped, how far, and which bound held. The pool with processes is in
// test/autoscale.test.ts.
import t, { type Test } from 'tap';
import type { ScalingPolicy } from '../config/model-config.js';
import type { Counted, Machine } from './machine.js';
import { Scaler, type ScaledPool, type ScaleEvent, type ScaledSettings } from './scaler.js';

const MB = 1024 * 1024;

/** A pool whose counts the test sets; added workers load at once unless `slowStarts`. */
class NumbersPool implements ScaledPool {
  size = 0;
  starting = false;
  waiting = 0;
  busy = 0;
  keepsWorkers = false;
  slowStarts = false;
  /** Every worker but the one starting. */
  loadedPids(): number[] {
    return Array.from({ length: this.starting ? this.size - 1 : this.size }, (_, i) => 100 + i);
  }
  add(count: number): void {
    this.size += count;
    if (this.slowStarts) this.starting = true;
  }
  retireIdle(count: number): number {
    const stopped = Math.min(count, this.size - this.busy);
    this.size -= stopped;
    return stopped;
  }
}

class TestMachine implements Machine {
  coreCount = 16;
  spare = 64 * 1024 * MB;
  workerBytes = 100 * MB;
  others = 0;
  private readonly pools = new Set<Counted>();
  cores(): number {
    return this.coreCount;
  }
  spareMemory(): number {
    return this.spare;
  }
  residentBytes(): number {
    return this.workerBytes;
  }
  workers(): number {
    return this.others + [...this.pools].reduce((n, p) => n + p.size, 0);
  }
  enlist(pool: Counted): void {
    this.pools.add(pool);
  }
  dismiss(pool: Counted): void {
    this.pools.delete(pool);
  }
}

const POLICY: ScalingPolicy = { waitingPerWorker: 4, upDelayMs: 1000, downDelayMs: 5000 };

interface Setup {
  pool: NumbersPool;
  machine: TestMachine;
  scaler: Scaler;
  events: ScaleEvent[];
  settings: { minWorkers: number; maxWorkers: number; scaling: ScalingPolicy };
  /** Moves the clock by `ms` in steps of 100 ms, the scaler looking at the pool at each. */
  pass: (ms: number) => void;
  /** A long queue for the up delay, which grows the pool to max_worker, then none waiting. */
  grow: () => void;
}

function setup(t: Test, min: number, max: number, scaling: ScalingPolicy = POLICY): Setup {
  let now = 0;
  const pool = new NumbersPool();
  pool.size = min;
  const machine = new TestMachine();
  machine.enlist(pool);
  const events: ScaleEvent[] = [];
  const settings = { minWorkers: min, maxWorkers: max, scaling };
  const scaler = new Scaler(pool, (): ScaledSettings => settings, { machine, now: () => now, onScale: (e) => events.push(e) });
  t.teardown(() => scaler.stop());
  scaler.reset();
  const pass = (ms: number): void => {
    for (let left = ms; left > 0; left -= 100) {
      now += Math.min(100, left);
      scaler.tick();
    }
  };
  const grow = (): void => {
    pool.waiting = 100;
    pass(1100);
    pool.waiting = 0;
  };
  return { pool, machine, scaler, events, settings, pass, grow };
}

t.test('a queue that builds up adds workers up to max_worker and no further, one start at a time', async (t) => {
  const { pool, scaler, events, pass } = setup(t, 1, 4);
  pool.slowStarts = true;
  pool.waiting = 6;
  pool.busy = 1;
  pass(900);
  t.equal(pool.size, 1, 'not before the up delay');
  pass(200);
  t.equal(pool.size, 2, 'a worker added once requests waited above the target for the delay');
  t.match(events.at(-1), { direction: 'up', reason: 'waiting', from: 1, to: 2 });
  pass(3000);
  t.equal(pool.size, 2, 'none added while the new one starts');
  pool.starting = false;
  pool.waiting = 40;
  pass(1100);
  t.equal(pool.size, 4, 'ten wanted at 40 waiting: up to max_worker at once');
  t.match(events.at(-1), { from: 2, to: 4, wanted: 10, bound: 'max_worker' });
  pool.starting = false;
  pass(5000);
  t.equal(pool.size, 4, 'and no further');
  t.equal(events.length, 2, 'a bound that goes on holding is told once');
  t.match(scaler.state(), { enabled: true, currentWorkers: 4, desiredWorkers: 10, boundHeld: 'max_worker', limits: { max_worker: 4 } });
});

t.test('a request refused for a full queue adds a worker, whatever the average waiting', async (t) => {
  const { pool, scaler, events, pass } = setup(t, 1, 3);
  pool.waiting = 1;
  scaler.refused();
  pass(1100);
  t.equal(pool.size, 2);
  t.match(events, [{ direction: 'up', reason: 'queue_full', from: 1, to: 2 }]);
  pass(1100);
  t.equal(pool.size, 2, 'not again without another refusal');
});

t.test('an idle moment under load neither stops the scaler nor loses a refusal', async (t) => {
  const { pool, scaler, pass } = setup(t, 1, 2);
  pool.busy = 1;
  scaler.arrived();
  scaler.refused();
  pool.busy = 0;
  pass(100);
  scaler.arrived();
  pass(1000);
  t.equal(pool.size, 2, 'the refusal before the idle moment added a worker');
});

t.test('requests waiting below the target per worker add none', async (t) => {
  const { pool, events, pass } = setup(t, 1, 4);
  pool.waiting = 4;
  pool.busy = 1;
  pass(10_000);
  t.equal(pool.size, 1);
  t.same(events, []);
});

t.test("the machine's cores, counting other models' workers, and its free memory hold a scale-up", async (t) => {
  const cores = setup(t, 1, 8);
  cores.machine.coreCount = 4;
  cores.machine.others = 2;
  cores.pool.waiting = 100;
  cores.pass(1100);
  t.equal(cores.pool.size, 2, 'four cores, two workers of other models: two of this one');
  t.match(cores.events.at(-1), { to: 2, bound: 'cores' });
  t.equal(cores.scaler.state().boundHeld, 'cores');

  const memory = setup(t, 1, 8);
  memory.machine.spare = 250 * MB;
  t.equal(memory.scaler.state().limits.memory, 3, "250 MB free: room for two more of this model's 100 MB workers");
  memory.pool.waiting = 100;
  memory.pass(1100);
  t.equal(memory.pool.size, 3);
  t.match(memory.events.at(-1), { to: 3, bound: 'memory' });
});

t.test('workers go back to min once fewer were needed for the scale-down delay, not before', async (t) => {
  const { pool, events, pass, grow } = setup(t, 1, 4);
  grow();
  t.equal(pool.size, 4);
  pass(4700);
  t.equal(pool.size, 4, 'added workers are kept for the scale-down delay');
  pass(400);
  t.equal(pool.size, 1, 'then the idle ones stop, down to min at once');
  t.match(events.at(-1), { direction: 'down', reason: 'idle', from: 4, to: 1 });
});

t.test('one worker busy at a time needs one: idle workers taking turns at the queue are not all needed', async (t) => {
  const { pool, scaler, pass, grow } = setup(t, 1, 3);
  grow();
  t.equal(pool.size, 3);
  // Low load: each batch finds one worker busy.
  for (let i = 0; i < 70; i++) {
    scaler.busy(1);
    pass(100);
  }
  t.equal(pool.size, 1, 'two stopped, one kept');
});

t.test('a busy worker is never stopped: the pool stops only idle ones, and the rest later', async (t) => {
  const { pool, events, scaler, pass, grow } = setup(t, 0, 3);
  grow();
  pool.busy = 2;
  scaler.busy(2);
  pass(5100);
  t.equal(pool.size, 2, 'two were needed at once');
  pool.busy = 1;
  pass(5100);
  t.equal(pool.size, 1, 'the idle one of them stopped; the busy one runs on');
  t.match(events.at(-1), { direction: 'down', from: 2, to: 1 });
});

t.test('min 0: the first request starts a worker at once; idle, the model goes back to none', async (t) => {
  const { pool, scaler, events, pass } = setup(t, 0, 2);
  t.equal(pool.size, 0);
  pool.waiting = 1;
  scaler.arrived();
  t.equal(pool.size, 1, 'started without the up delay');
  t.match(events, [{ direction: 'up', reason: 'cold_start', from: 0, to: 1 }]);
  pool.waiting = 0;
  pass(4900);
  t.equal(pool.size, 1, 'kept for the scale-down delay');
  pass(200);
  t.equal(pool.size, 0, 'then stopped');
  t.match(events.at(-1), { direction: 'down', reason: 'idle', from: 1, to: 0 });
  // A request that came as the last worker stopped is not left without one.
  pool.waiting = 1;
  pass(100);
  t.equal(pool.size, 1, 'a waiting request and no worker: one starts');
});

t.test('min 0: requests that waited above the target while the first worker started start more as it is READY, as the cores allow', async (t) => {
  const { pool, machine, scaler, events, pass } = setup(t, 0, 4);
  machine.coreCount = 2;
  pool.slowStarts = true;
  pool.waiting = 1;
  scaler.arrived();
  t.equal(pool.size, 1, 'the first request starts one');
  pool.waiting = 100;
  pass(1500);
  t.equal(pool.size, 1, 'none more while it starts (a second start would slow it)');
  pool.starting = false;
  pass(100);
  t.equal(pool.size, 2, 'a second starts as the first is READY, not an up delay later: the requests waited for the start');
  t.match(events.at(-1), { direction: 'up', reason: 'waiting', from: 1, to: 2, bound: 'cores' });
  pool.starting = false;
  pass(3000);
  t.equal(pool.size, 2, 'the cores hold it');
});

t.test('min 0: a few requests waiting while the first worker starts, under the target, start no more', async (t) => {
  const { pool, scaler, pass } = setup(t, 0, 4);
  pool.slowStarts = true;
  pool.waiting = 1;
  scaler.arrived();
  pool.waiting = POLICY.waitingPerWorker;
  pass(3000);
  t.equal(pool.size, 1, 'one start for a load one worker takes');
});

t.test('max_worker == min_worker: nothing is added or stopped, whatever waits', async (t) => {
  const { pool, scaler, events, pass } = setup(t, 2, 2);
  pool.waiting = 100;
  scaler.arrived();
  pass(10_000);
  t.equal(pool.size, 2);
  t.same(events, []);
  t.match(scaler.state(), { enabled: false, currentWorkers: 2, desiredWorkers: 2 });
  const none = setup(t, 0, 0);
  none.scaler.arrived();
  t.equal(none.pool.size, 0, 'max 0: no cold start (the model refuses instead)');
});

t.test("a stateful model's workers, which hold its sequences, are not stopped for idling", async (t) => {
  const { pool, pass, grow } = setup(t, 1, 3);
  pool.keepsWorkers = true;
  grow();
  t.equal(pool.size, 3);
  pass(20_000);
  t.equal(pool.size, 3);
});

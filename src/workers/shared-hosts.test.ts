// Where shared workers go (workers/shared-hosts.ts), on hosts that are stand-ins (no processes):
// the least full host with room and no worker of the model, else the spare, which is replaced;
// a host emptied is the spare, or is kept while no more hosts than cores run, or ends; a dead
// host is never chosen.
import t from 'tap';
import type { TsError } from '../errors.js';
import type { FromWorker } from '../protocol/messages.js';
import { BUSY_HOST_BATCHES, SharedHosts } from './shared-hosts.js';
import type { Tenant, WorkerHost } from './worker-host.js';

/** A host's bookkeeping without its process. */
class StandInHost {
  static nextPid = 100;
  readonly pid = StandInHost.nextPid++;
  readonly shared = true;
  exited = false;
  killed = false;

  get open(): boolean {
    return !this.exited && !this.killed;
  }
  onExit: (() => void) | undefined;
  onEmpty: (() => void) | undefined;
  private readonly tenants = new Map<string, Tenant>();

  get size(): number {
    return this.tenants.size;
  }

  holds(model: string): boolean {
    return [...this.tenants.values()].some((t) => t.model === model);
  }

  /** What the test says its models were sent lately. */
  batches = 0;

  residentBytes(): number {
    return 25 * 2 ** 20;
  }

  recentBatches(): number {
    return this.batches;
  }

  attach(key: string, tenant: Tenant): void {
    this.tenants.set(key, tenant);
  }

  detach(key: string): void {
    if (this.tenants.delete(key) && this.tenants.size === 0) this.onEmpty?.();
  }

  kill(): void {
    this.killed = true;
  }

  /** The process's exit as the host reports it: some time after its kill. */
  exit(): void {
    this.exited = true;
    this.onExit?.();
  }
}

function tenant(model: string): Tenant {
  return {
    model,
    messageBound: 1,
    loadBytes: undefined,
    onMessage(_msg: FromWorker) {},
    onHostExit(_code: number | null, _signal: NodeJS.Signals | null, _error: TsError) {},
  };
}

function hosts(modelsPerHost: number, spreadOver = 1): { hosts: SharedHosts; started: StandInHost[] } {
  const started: StandInHost[] = [];
  const shared = new SharedHosts({
    modelsPerHost,
    spreadOver,
    intraOpThreads: 1,
    nice: 0,
    env: {},
    maxResponseSize: 1024,
    onOutput: () => {},
    log: () => {},
    startHost: () => {
      const host = new StandInHost();
      started.push(host);
      return host as unknown as WorkerHost;
    },
  });
  return { hosts: shared, started };
}

/** Places a worker of `model` as a WorkerProcess does: asks for a host, then moves in. */
function place(shared: SharedHosts, model: string, key: string): StandInHost {
  const host = shared.hostFor(model) as unknown as StandInHost;
  host.attach(key, tenant(model));
  return host;
}

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('workers fill the least full host; a second worker of a model goes elsewhere; the spare is replaced when taken', async (t) => {
  const { hosts: shared, started } = hosts(3);
  const first = place(shared, 'a_1', 'k1');
  await nextTick();
  t.equal(started.length, 2, 'the first worker started a host, and a spare was started after it');
  t.equal(place(shared, 'b_1', 'k2'), first, 'b joins the running host, not the spare');
  const second = place(shared, 'a_1', 'k3');
  t.not(second, first, "a's second worker does not join a's first");
  t.equal(second, started[1], 'it takes the spare');
  await nextTick();
  t.equal(started.length, 3, 'a new spare is started');
  t.equal(place(shared, 'c_1', 'k4'), second, 'c goes to the least full host');
  place(shared, 'd_1', 'k5');
  t.equal(first.size, 3, 'first is full');
  t.not(place(shared, 'e_1', 'k6'), first, 'a full host takes no more');
  shared.close();
  t.ok(
    started.every((h) => h.killed),
    'close ends every host',
  );
});

t.test('an emptied host becomes the spare, or is kept while no more hosts than cores run, else ends; a dead host is never chosen', async (t) => {
  const { hosts: shared, started } = hosts(4);
  const first = place(shared, 'a_1', 'k1');
  await nextTick();
  first.detach('k1');
  t.notOk(first.killed, 'emptied while a spare runs, one host for one core: kept');
  t.equal(place(shared, 'b_1', 'k2'), first, 'the next worker takes the emptied host, not the spare');
  const second = place(shared, 'b_1', 'k3');
  t.equal(second, started[1], "b's second worker takes the spare");
  await nextTick();
  second.detach('k3');
  t.ok(second.killed, 'emptied while a spare runs and more hosts than cores: ended');
  const third = place(shared, 'c_1', 'k4');
  t.equal(third, first, 'c joins the running host with room, not the host ended but not yet exited');
  second.exit();
  started[2]!.exit();
  first.detach('k2');
  first.detach('k4');
  t.notOk(first.killed, 'emptied when the spare has died: kept');
  t.equal(place(shared, 'd_1', 'k5'), first, 'as the spare, the next worker takes it');
  shared.close();
});

t.test('models loaded and unloaded in turn reuse the hosts: no host started for each load', async (t) => {
  const { hosts: shared, started } = hosts(4, 2);
  const models = ['a_1', 'b_1', 'c_1', 'd_1'];
  // Two models loaded at a time (max_loaded_models=2): each load unloads the one loaded longest ago.
  const loaded: Array<{ host: StandInHost; key: string }> = [];
  for (let i = 0; i < 40; i++) {
    if (loaded.length === 2) {
      const oldest = loaded.shift()!;
      oldest.host.detach(oldest.key);
    }
    const key = `k${i}`;
    loaded.push({ host: place(shared, models[i % models.length]!, key), key });
    await nextTick();
  }
  t.ok(started.length <= 4, `${started.length} hosts started for 40 loads (two for two cores, a spare, at most one more)`);
  t.equal(started.filter((h) => h.killed).length, 0, 'none ended');
  shared.close();
});

t.test('a model loads into the host sent the fewest batches lately, though it holds more workers', async (t) => {
  const { hosts: shared, started } = hosts(8);
  const first = place(shared, 'hot_1', 'k1');
  await nextTick();
  const second = place(shared, 'hot_1', 'k2');
  t.not(second, first, "the hot model's second worker is in another host");
  await nextTick();
  first.batches = 3;
  second.batches = 400;
  t.equal(place(shared, 'cold_1', 'k3'), first, 'a load goes to the host with fewer batches');
  t.equal(place(shared, 'cold_2', 'k4'), first, 'and again, though it holds more workers now');
  t.equal(second.size, 1, 'the busy host took none');
  t.equal(started.length, 3, 'no host started but the spares');
  shared.close();
});

t.test("a load never goes to a busy model's host: the spare takes it, and the next load the host that was the spare", async (t) => {
  const { hosts: shared, started } = hosts(8);
  const busy = place(shared, 'hot_1', 'k1');
  await nextTick();
  busy.batches = BUSY_HOST_BATCHES;
  const first = place(shared, 'cold_1', 'k2');
  t.not(first, busy, 'the busy host has room, but the load takes the spare');
  t.equal(first, started[1], 'the spare');
  await nextTick();
  t.equal(place(shared, 'cold_2', 'k3'), first, 'the next load joins the former spare, not the busy host nor the new spare');
  t.equal(busy.size, 1, 'the busy host took none');
  busy.batches = BUSY_HOST_BATCHES - 1;
  first.batches = BUSY_HOST_BATCHES - 1;
  t.equal(place(shared, 'cold_3', 'k4'), busy, 'below the mark, the fewer workers decide');
  shared.close();
});

t.test('workers spread over as many hosts as cores before any host takes a second', async (t) => {
  const { hosts: shared, started } = hosts(8, 2);
  const first = place(shared, 'a_1', 'k1');
  await nextTick();
  const second = place(shared, 'b_1', 'k2');
  t.not(second, first, 'the second model takes the spare: two hosts for two cores');
  await nextTick();
  const third = place(shared, 'c_1', 'k3');
  t.ok(third === first || third === second, 'the third joins one of them');
  t.equal(place(shared, 'd_1', 'k4'), third === first ? second : first, 'the fourth the other');
  t.equal(started.length, 3, 'two hosts and a spare');
  shared.close();
});

t.test("the spare host's memory is reported for the budget, and nothing once it is taken or gone", async (t) => {
  const { hosts: shared, started } = hosts(4);
  t.equal(shared.spareBytes(), 0, 'no spare before any model shares');
  place(shared, 'a_1', 'k1');
  await nextTick();
  t.equal(shared.spareBytes(), 25 * 2 ** 20, "the spare's PSS");
  place(shared, 'a_1', 'k2');
  t.equal(shared.spareBytes(), 0, "taken by a worker: its memory is that worker's now");
  await nextTick();
  started[2]!.kill();
  t.equal(shared.spareBytes(), 0, 'a spare being ended counts no more');
  shared.close();
});

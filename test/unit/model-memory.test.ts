// The memory budget holds as loaded models grow after their load (models/model-memory.ts): their
// workers' memory is looked at every GROWTH_CHECK_MS, and past the budget (less LOAD_HEADROOM, the
// loads' transient memory) the least recently used idle models are unloaded until the rest fit,
// with no load to make room for. Before, only a load
// made room: a 1,000-model run (bench/many-models.mjs) stayed past the budget through whole phases.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Model } from '../../src/models/model.js';
import { HOLD } from './fake-worker.js';
import { type InProcessServer, inProcessServer, storeArchive } from './in-process.js';

const MB = 2 ** 20;
/** The servers' GROWTH_CHECK_MS: the same looks as a second's, in a few milliseconds. */
const GROWTH_CHECK_MS = 25;

/** Registers `name`.mar with one worker, synchronously, as the tests' models are. */
function register(server: InProcessServer, name: string): ReturnType<InProcessServer['management']> {
  return server.management({ method: 'POST', url: `/models?url=${name}.mar&initial_workers=1&synchronous=true` });
}

t.test('models that grow past the budget after their load: the least recently used idle one is unloaded', async (t) => {
  const names = ['a', 'b', 'c'];
  // Three workers counted at their estimate (84 MB each, a worker's base) fit in 300 MB.
  const server = await inProcessServer(t, { models: names, properties: { model_memory_budget_mb: '300' }, growthCheckMs: GROWTH_CHECK_MS });
  for (const name of names) {
    const res = await register(server, name);
    t.equal(res.statusCode, 200, `${name} registered: ${res.json().status}`);
  }
  const loaded = (): boolean[] => names.map((n) => server.registry.get(n).loaded);
  t.same(loaded(), [true, true, true], 'all three loaded');
  for (const worker of server.workers) worker.memory = 90 * MB;
  // b and c answer; a, never asked, is the least recently used.
  for (const name of ['b', 'c']) t.equal((await server.inference({ method: 'POST', url: `/predictions/${name}`, payload: 'x' })).statusCode, 200);
  await new Promise((resolve) => setTimeout(resolve, 2 * GROWTH_CHECK_MS));
  t.same(loaded(), [true, true, true], '270 MB in a 300 MB budget: nothing unloaded');
  // They grow as they serve: 3 x 99 MB, within the budget but not within what loads leave free
  // (LOAD_HEADROOM, 5%: 285 MB); one unloaded brings it back.
  for (const worker of server.workers) worker.memory = 99 * MB;
  // Bounded in time, not in looks: on a busy machine a look may come late.
  const deadline = Date.now() + 5000;
  while (server.registry.get('a').loaded && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  await new Promise((resolve) => setTimeout(resolve, 2 * GROWTH_CHECK_MS));
  t.same(loaded(), [false, true, true], 'a, the least recently used, unloaded; b and c, 198 MB, stay');
  const res = await server.inference({ method: 'POST', url: '/predictions/a', payload: 'x' });
  t.equal(res.statusCode, 200, "a's next request loads it and is answered");
});

t.test('a load waiting for room whose requests all timed out is dropped, not loaded later in place of a model in use', async (t) => {
  // b's requests wait 100 ms in its queue at most (its clientTimeoutInMills, which
  // default_queue_timeout sets in whole seconds where a model does not).
  const server = await inProcessServer(t, {
    models: ['a'],
    properties: { max_loaded_models: '1' },
    prepare: (store) => {
      const yaml = join(store, '..', 'model-config.yaml');
      writeFileSync(yaml, 'clientTimeoutInMills: 100\n');
      storeArchive(store, 'b', { configFile: yaml });
    },
  });
  for (const name of ['a', 'b']) {
    const res = await register(server, name);
    t.equal(res.statusCode, 200, `${name} registered`);
  }
  t.same([server.registry.get('a').loaded, server.registry.get('b').loaded], [true, false], 'a loaded, b past max_loaded_models');
  const busy = server.inference({ method: 'POST', url: '/predictions/a', payload: HOLD });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const timedOut = await server.inference({ method: 'POST', url: '/predictions/b', payload: 'x' });
  t.equal(timedOut.statusCode, 503, "b's request waited past its queue's deadline, a busy: 503");
  for (const worker of server.workers) worker.release();
  t.equal((await busy).statusCode, 200, "a's request answered");
  // a falls idle: the waiting loads are looked at again at once, and each RETRY_MS (100 ms) while
  // any waits. Nobody waits for b any more. (Loading b anyway showed at the first look.)
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.same([server.registry.get('a').loaded, server.registry.get('b').loaded], [true, false], 'a still loaded; b, asked for by no one, not loaded');
  t.equal((await server.inference({ method: 'POST', url: '/predictions/a', payload: 'x' })).statusCode, 200, 'a answers');
});

// The order of use is kept as requests come (ModelMemory.modelUsed), not sorted by lastUsed at
// each decision: requests in one millisecond keep their order, where the sort left them in the
// registry's order and unloaded a model asked for after the one it kept.
t.test('requests in one millisecond: the one asked for first is the least recently used', async (t) => {
  const names = ['a', 'b', 'c', 'd'];
  const server = await inProcessServer(t, { models: names, properties: { max_loaded_models: '3' } });
  for (const name of names) {
    const res = await register(server, name);
    t.equal(res.statusCode, 200, `${name} registered`);
  }
  t.equal(server.registry.get('d').loaded, false, 'd registered unloaded (max_loaded_models)');
  const realNow = Date.now;
  const frozen = realNow();
  Date.now = () => frozen;
  t.teardown(() => {
    Date.now = realNow;
  });
  for (const name of ['c', 'a', 'b']) t.equal((await server.inference({ method: 'POST', url: `/predictions/${name}`, payload: 'x' })).statusCode, 200);
  t.equal((await server.inference({ method: 'POST', url: '/predictions/d', payload: 'x' })).statusCode, 200, "d's request loads it");
  const loaded = (): boolean[] => names.map((n) => server.registry.get(n).loaded);
  t.same(loaded(), [true, true, false, true], 'c, asked for first, unloaded for d');
  t.equal((await server.inference({ method: 'POST', url: '/predictions/a', payload: 'x' })).statusCode, 200);
  t.equal((await server.inference({ method: 'POST', url: '/predictions/c', payload: 'x' })).statusCode, 200, "c's request loads it again");
  t.same(loaded(), [true, false, true, true], 'b, now the least recently used (a was asked again), unloaded for c');
});

t.test('a model registered with workers and never asked for is less recently used than one asked for', async (t) => {
  const names = ['a', 'b', 'c'];
  const server = await inProcessServer(t, { models: names, properties: { max_loaded_models: '2' } });
  const registered = async (name: string): Promise<void> => {
    t.equal((await register(server, name)).statusCode, 200, `${name} registered`);
  };
  await registered('a');
  t.equal((await server.inference({ method: 'POST', url: '/predictions/a', payload: 'x' })).statusCode, 200);
  await registered('b');
  await registered('c');
  t.same(
    names.map((n) => server.registry.get(n).loaded),
    [true, true, false],
    'c registered unloaded (max_loaded_models)',
  );
  t.equal((await server.inference({ method: 'POST', url: '/predictions/c', payload: 'x' })).statusCode, 200);
  t.same(
    names.map((n) => server.registry.get(n).loaded),
    [true, false, true],
    'b, registered after a was asked for but never asked for itself, unloaded for c',
  );
});

// What the budget counts is kept as a running sum, measured again where something changed (a
// load, an unload, an operator's scale, an unregistration) and in full each GROWTH_CHECK_MS: a
// decision right after a change counts it.
t.test("an operator's scale counts at the next decision, not only at the next full measure", async (t) => {
  const names = ['a', 'b', 'c'];
  // Workers at their estimate (84 MB, a worker's base): three fit in 300 MB less 2%, four do not.
  const server = await inProcessServer(t, { models: names, properties: { model_memory_budget_mb: '300' } });
  t.equal((await register(server, 'a')).statusCode, 200);
  const scaled = await server.management({ method: 'PUT', url: '/models/a?min_worker=2&max_worker=2&synchronous=true' });
  t.equal(scaled.statusCode, 200, 'a scaled to two workers');
  t.equal((await register(server, 'b')).statusCode, 200);
  t.equal((await register(server, 'c')).statusCode, 200);
  t.same(
    names.map((n) => server.registry.get(n).loaded),
    [true, true, false],
    "c registered unloaded: a's two workers and b's hold 252 MB, a fourth would pass 294",
  );
});

t.test('an unregistered model leaves the count at once', async (t) => {
  const names = ['a', 'b', 'c'];
  const server = await inProcessServer(t, { models: names, properties: { max_loaded_models: '2' } });
  for (const name of ['a', 'b']) t.equal((await register(server, name)).statusCode, 200);
  t.equal((await server.management({ method: 'DELETE', url: '/models/a' })).statusCode, 200, 'a unregistered');
  t.equal((await register(server, 'c')).statusCode, 200);
  t.equal(server.registry.get('c').loaded, true, 'c loaded at its registration: a no longer counts');
});

// A request for a model chosen to make room comes while its unload still retires its workers: the
// load it asks for (or an operator's scale) waits its turn. Until then the model counted as loaded
// with a pool of no worker, and the requests after the first were refused 503 "has no worker"
// (review-6: a busy model under a budget lost requests so).
for (const [restored, restore] of [
  ['its load waits its turn', (model: Model) => model.load()],
  ["an operator's scale waits for the unload", (model: Model) => model.scale(1, 1)],
] as const) {
  t.test(`requests that come while a model is unloaded and ${restored}: they wait for its workers, none refused`, async (t) => {
    const server = await inProcessServer(t, { models: ['a'] });
    t.equal((await register(server, 'a')).statusCode, 200);
    const model = server.registry.get('a');
    // A batch in the worker: the unload's retirement waits for it, as a worker process's exit takes its time.
    const held = server.inference({ method: 'POST', url: '/predictions/a', payload: HOLD });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const unloaded = model.unload();
    const back = restore(model);
    const asked = [1, 2, 3].map(() => server.inference({ method: 'POST', url: '/predictions/a', payload: 'x' }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const worker of server.workers) worker.release();
    const answers = await Promise.all([held, ...asked]);
    t.same(
      answers.map((a) => a.statusCode),
      [200, 200, 200, 200],
      'each request waited for the workers and was answered',
    );
    await unloaded;
    t.ok((await back).ok, 'the model serves again');
    t.equal(model.loaded, true);
  });
}

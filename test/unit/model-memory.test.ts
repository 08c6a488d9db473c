// The memory budget holds as loaded models grow after their load (models/model-memory.ts): their
// workers' memory is looked at every GROWTH_CHECK_MS, and past the budget (less LOAD_HEADROOM, the
// loads' transient memory) the least recently used idle models are unloaded until the rest fit,
// with no load to make room for. Before, only a load
// made room: a 1,000-model run (bench/many-models.mjs) stayed past the budget through whole phases.
// Which model is the least recently used is test/unit/least-recently-used.test.ts's; loads and
// requests that wait for room test/unit/waiting-loads.test.ts's.
import t from 'tap';
import { inProcessServer, registerModel } from './in-process.js';

const MB = 2 ** 20;
/** The servers' GROWTH_CHECK_MS: the same looks as a second's, in a few milliseconds. */
const GROWTH_CHECK_MS = 25;

t.test('models that grow past the budget after their load: the least recently used idle one is unloaded', async (t) => {
  const names = ['a', 'b', 'c'];
  // Three workers counted at their estimate (84 MB each, a worker's base) fit in 300 MB.
  const server = await inProcessServer(t, { models: names, properties: { model_memory_budget_mb: '300' }, growthCheckMs: GROWTH_CHECK_MS });
  for (const name of names) {
    const res = await registerModel(server, name);
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

// What the budget counts is kept as a running sum, measured again where something changed (a
// load, an unload, an operator's scale, an unregistration) and in full each GROWTH_CHECK_MS: a
// decision right after a change counts it.
t.test("an operator's scale counts at the next decision, not only at the next full measure", async (t) => {
  const names = ['a', 'b', 'c'];
  // Workers at their estimate (84 MB, a worker's base): three fit in 300 MB less 2%, four do not.
  const server = await inProcessServer(t, { models: names, properties: { model_memory_budget_mb: '300' } });
  t.equal((await registerModel(server, 'a')).statusCode, 200);
  const scaled = await server.management({ method: 'PUT', url: '/models/a?min_worker=2&max_worker=2&synchronous=true' });
  t.equal(scaled.statusCode, 200, 'a scaled to two workers');
  t.equal((await registerModel(server, 'b')).statusCode, 200);
  t.equal((await registerModel(server, 'c')).statusCode, 200);
  t.same(
    names.map((n) => server.registry.get(n).loaded),
    [true, true, false],
    "c registered unloaded: a's two workers and b's hold 252 MB, a fourth would pass 294",
  );
});

t.test('an unregistered model leaves the count at once', async (t) => {
  const names = ['a', 'b', 'c'];
  const server = await inProcessServer(t, { models: names, properties: { max_loaded_models: '2' } });
  for (const name of ['a', 'b']) t.equal((await registerModel(server, name)).statusCode, 200);
  t.equal((await server.management({ method: 'DELETE', url: '/models/a' })).statusCode, 200, 'a unregistered');
  t.equal((await registerModel(server, 'c')).statusCode, 200);
  t.equal(server.registry.get('c').loaded, true, 'c loaded at its registration: a no longer counts');
});

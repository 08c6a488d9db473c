// Which loaded model the memory budget unloads for another (models/model-memory.ts): the least
// recently used, by the order requests came in.
import t from 'tap';
import { inProcessServer, registerModel } from './in-process.js';

// The order of use is kept as requests come (ModelMemory.modelUsed), not sorted by lastUsed at
// each decision: requests in one millisecond keep their order, where the sort left them in the
// registry's order and unloaded a model asked for after the one it kept.
t.test('requests in one millisecond: the one asked for first is the least recently used', async (t) => {
  const names = ['a', 'b', 'c', 'd'];
  const server = await inProcessServer(t, { models: names, properties: { max_loaded_models: '3' } });
  for (const name of names) {
    const res = await registerModel(server, name);
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
    t.equal((await registerModel(server, name)).statusCode, 200, `${name} registered`);
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

// Loads that wait for room under the memory budget (models/model-memory.ts): one whose requests
// all timed out is dropped, and requests for a model being unloaded wait for its workers.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Model } from '../../src/models/model.js';
import { HOLD } from './fake-worker.js';
import { inProcessServer, registerModel, storeArchive } from './in-process.js';

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
    const res = await registerModel(server, name);
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
    t.equal((await registerModel(server, 'a')).statusCode, 200);
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

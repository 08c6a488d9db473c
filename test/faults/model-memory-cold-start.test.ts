// A model with no worker (minWorkers 0) keeps to the memory budget and max_loaded_models too: the
// worker its first request starts, and those a scale-up adds, are admitted by the memory manager
// like any load. One that could never fit is answered 507; one that fits once an idle model is
// unloaded waits for that unload. Every request sent is answered.
import t, { type Test } from 'tap';
import { describe as describeModel, predict, serve } from '../echo-model.js';
import { errorBody, type TestServer } from '../helpers.js';
import { survived } from './survival.js';

interface Residency {
  loaded: boolean;
  workers: Array<{ pid: number }>;
}

async function residency(server: TestServer, model: string): Promise<Residency> {
  return (await describeModel(server, model)) as unknown as Residency;
}

/** Registers echo.mar as `name` with a worker: past max_loaded_models, registered unloaded. */
async function registerWithWorker(t: Test, server: TestServer, name: string): Promise<void> {
  const res = await fetch(`${server.urls.management}/models?url=echo.mar&model_name=${name}&initial_workers=1&synchronous=true`, { method: 'POST' });
  t.equal(res.status, 200, `${name} registered`);
  await res.arrayBuffer();
}

/** Registers echo.mar as `name` with no worker, then lets its workers follow the load from 0 to `maxWorkers`. */
async function registerScaledToZero(t: Test, server: TestServer, name: string, maxWorkers: number): Promise<void> {
  const registered = await fetch(`${server.urls.management}/models?url=echo.mar&model_name=${name}&initial_workers=0&synchronous=true`, { method: 'POST' });
  t.equal(registered.status, 200, `${name} registered with no worker`);
  await registered.arrayBuffer();
  const scaled = await fetch(`${server.urls.management}/models/${name}?min_worker=0&max_worker=${maxWorkers}&synchronous=true`, { method: 'PUT' });
  t.equal(scaled.status, 200, `${name} scaled to 0..${maxWorkers}`);
  await scaled.arrayBuffer();
}

t.test('the first request of a model with no worker that could never fit the budget is answered 507', async (t) => {
  const server = await serve(t, { model_memory_budget_mb: '1' });
  await registerScaledToZero(t, server, 'cold', 2);
  const statuses: number[] = [];
  let message = '';
  for (let i = 0; i < 5; i++) {
    const res = await predict(server, 'cold', 'hello');
    statuses.push(res.status);
    if (res.status === 507) message = (await errorBody(res)).message;
    else await res.arrayBuffer();
  }
  t.same(statuses, Array(5).fill(507), 'each request: 507, as the same model at start-up gets');
  t.match(message, /Model "cold" cannot be loaded: it needs about [\d.]+ MB and the budget is 1\.0 MB \(model_memory_budget_mb\)/, 'the message says why');
  t.equal((await residency(server, 'cold')).workers.length, 0, 'no worker was started');
  await survived(t, server, { models: ['cold'], sent: 5, answered: 5 });
});

t.test("with max_loaded_models 1, a model with no worker starts its first one only after the idle model's unload", async (t) => {
  const server = await serve(t, { max_loaded_models: '1' });
  await registerWithWorker(t, server, 'a');
  await registerScaledToZero(t, server, 'b', 1);
  const res = await predict(server, 'b', 'hello');
  t.equal(res.status, 200, "b's first request is answered");
  await res.arrayBuffer();
  const [a, b] = [await residency(server, 'a'), await residency(server, 'b')];
  t.same([a.loaded, a.workers.length, b.workers.length], [false, 0, 1], 'a, idle, was unloaded for b: one model has workers');
  const again = await predict(server, 'a', 'hello');
  t.equal(again.status, 200, "a's next request loads it again");
  await again.arrayBuffer();
  await survived(t, server, { models: ['a', 'b'], sent: 2, answered: 2 });
});

t.test('a request waiting for room is not stranded when its model is scaled to 0..1 meanwhile: it loads once room frees', async (t) => {
  const server = await serve(t, { max_loaded_models: '1' });
  for (const name of ['a', 'b']) await registerWithWorker(t, server, name);
  t.equal((await residency(server, 'b')).loaded, false, 'b is registered unloaded');
  const busy = predict(server, 'a', 'sleep:2000');
  await new Promise((r) => setTimeout(r, 300));
  const waiting = predict(server, 'b', 'hello');
  await new Promise((r) => setTimeout(r, 300));
  const scaled = await fetch(`${server.urls.management}/models/b?min_worker=0&max_worker=1&synchronous=true`, { method: 'PUT' });
  t.equal(scaled.status, 200, 'b scaled to 0..1 while its request waits for room');
  await scaled.arrayBuffer();
  const [a, b] = await Promise.all([busy, waiting]);
  t.same([a.status, b.status], [200, 200], "a's request, and b's once a fell idle and was unloaded: both 200");
  await Promise.all([a.arrayBuffer(), b.arrayBuffer()]);
  t.same([(await residency(server, 'a')).workers.length, (await residency(server, 'b')).workers.length], [0, 1], 'a made room for b');
  await survived(t, server, { models: ['a', 'b'], sent: 2, answered: 2 });
});

t.test('unregistering a model whose request waits for room answers that request at once, and the unregister too', async (t) => {
  const server = await serve(t, { max_loaded_models: '1' });
  for (const name of ['a', 'b']) await registerWithWorker(t, server, name);
  const busy = predict(server, 'a', 'sleep:1000');
  await new Promise((r) => setTimeout(r, 300));
  const waiting = predict(server, 'b', 'hello');
  await new Promise((r) => setTimeout(r, 300));
  const unregistered = await fetch(`${server.urls.management}/models/b`, { method: 'DELETE', signal: AbortSignal.timeout(60_000) });
  t.equal(unregistered.status, 200, 'b unregistered');
  await unregistered.arrayBuffer();
  const b = await waiting;
  t.equal(b.status, 503, "b's request: 503");
  t.match((await errorBody(b)).message, /Model "b" stopped before it could serve this request/, 'it says the model stopped, not that the request timed out');
  const a = await busy;
  t.equal(a.status, 200, "a's request is answered");
  await a.arrayBuffer();
  await survived(t, server, { models: ['a'], sent: 2, answered: 2 });
});

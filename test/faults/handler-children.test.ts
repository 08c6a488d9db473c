// Processes a handler starts (child_process in a handler, as handlers that shell out do) end with
// its worker: when the worker is killed (and restarted), scaled down, its model unregistered, or
// the server stopped. TorchServe users rely on a dead worker leaving nothing behind.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, FIXTURES, startTestServer, type TestServer, waitFor, waitReady } from '../helpers.js';
import { alive } from './front-end.js';
import { survived } from './survival.js';

const ONLY_LINUX = { skip: process.platform !== 'linux' && 'reads /proc' };

async function serveSpawner(t: Test, workers = 1): Promise<TestServer> {
  const server = await startTestServer(t, {
    prepare: (store) => {
      const configFile = join(store, '..', 'model-config.yaml');
      writeFileSync(configFile, `minWorkers: ${workers}\nmaxWorkers: ${workers}\nsharedWorker: false\n`);
      buildMar(store, { modelName: 'spawner', version: '1.0', handler: join(FIXTURES, 'spawning_handler.ts'), configFile });
    },
    properties: { load_models: 'spawner.mar' },
  });
  await waitReady(server.urls.management, 'spawner', workers);
  return server;
}

/** Has the worker start a `sleep`; its pid and the worker's. Killed at the end of the test whatever happens. */
async function spawnChild(t: Test, server: TestServer): Promise<{ child: number; worker: number }> {
  const res = await fetch(`${server.urls.inference}/predictions/spawner`, { method: 'POST', body: 'spawn', signal: AbortSignal.timeout(30_000) });
  t.equal(res.status, 200, 'the handler started a child');
  const pids = (await res.json()) as { child: number; worker: number };
  t.ok(alive(pids.child), `the handler's child ${pids.child} runs`);
  t.teardown(() => {
    if (alive(pids.child)) process.kill(pids.child, 'SIGKILL');
  });
  return pids;
}

async function gone(t: Test, pid: number, what: string): Promise<void> {
  await waitFor(() => !alive(pid), 10_000, what).catch(() => undefined);
  t.notOk(alive(pid), what);
}

t.test("a worker killed from outside takes the handler's child with it, and its restart serves", ONLY_LINUX, async (t) => {
  const server = await serveSpawner(t);
  const { child, worker } = await spawnChild(t, server);
  process.kill(worker, 'SIGKILL');
  await gone(t, child, "the killed worker's child ended with it");
  await waitFor(async () => (await fetch(`${server.urls.inference}/predictions/spawner`, { method: 'POST', body: 'pid' })).status === 200, 30_000, 'restarted');
  await survived(t, server, { models: ['spawner'] });
});

t.test("scaling down ends the retired worker's children", ONLY_LINUX, async (t) => {
  const server = await serveSpawner(t);
  const { child } = await spawnChild(t, server);
  const res = await fetch(`${server.urls.management}/models/spawner?min_worker=0&max_worker=0&synchronous=true`, { method: 'PUT' });
  t.equal(res.status, 200, `scaled to 0: ${await res.text()}`);
  await gone(t, child, "the scaled-down worker's child ended");
  await survived(t, server, { models: ['spawner'] });
});

t.test("unregistering the model ends its workers' children", ONLY_LINUX, async (t) => {
  const server = await serveSpawner(t);
  const { child } = await spawnChild(t, server);
  const res = await fetch(`${server.urls.management}/models/spawner`, { method: 'DELETE' });
  t.equal(res.status, 200, `unregistered: ${await res.text()}`);
  await gone(t, child, "the unregistered model's worker's child ended");
  await survived(t, server, { models: [] });
});

t.test("stopping the server ends its workers' children", ONLY_LINUX, async (t) => {
  const server = await serveSpawner(t, 2);
  const first = await spawnChild(t, server);
  const second = await spawnChild(t, server);
  await survived(t, server, { models: ['spawner'] });
  await server.close();
  await gone(t, first.child, 'the first child ended with the server');
  await gone(t, second.child, 'the second child ended with the server');
});

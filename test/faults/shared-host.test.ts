// A handler that crashes a shared worker host (workers/shared-hosts.ts) takes down only what it
// shares: every request in flight for every model in that process is answered 500 "Worker died.",
// the host's models restart, in a new host, and all of them serve again; a model in a process of
// its own is untouched.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { describe, predict, register, serve } from '../echo-model.js';
import { buildMar, errorBody, FIXTURES, requestsArrived, startTestServer, waitFor } from '../helpers.js';
import { survived } from './survival.js';

interface SharedDescribed {
  workers: Array<{ pid: number; status: string; sharedHost: boolean }>;
}

async function workerOf(server: Parameters<typeof describe>[0], model: string): Promise<SharedDescribed['workers'][number]> {
  return ((await describe(server, model)) as unknown as SharedDescribed).workers[0]!;
}

t.test('a crash in a shared host: every in-flight request of its models gets "Worker died.", then all serve again', async (t) => {
  const server = await serve(t, {}, 'sharedWorker: true\n');
  const shared = ['a', 'b', 'c'];
  for (const name of shared) await register(t, server, name, { initial_workers: 1 });
  const before = (await workerOf(server, 'a')).pid;

  // a and b each have a request running in the host when c's handler aborts the process.
  const held = [predict(server, 'a', 'sleep:5000'), predict(server, 'b', 'sleep:5000')];
  await requestsArrived(server, 'a', 1);
  await requestsArrived(server, 'b', 1);
  const crash = predict(server, 'c', 'crash');
  const answers = await Promise.all([...held, crash]);
  for (const [i, res] of answers.entries()) {
    t.equal(res.status, 500, `request ${i + 1} of 3: 500`);
    t.same(await errorBody(res), { code: 500, type: 'InternalServerException', message: 'Worker died.' }, `request ${i + 1} of 3: "Worker died."`);
  }

  await waitFor(async () => (await Promise.all(shared.map((m) => workerOf(server, m)))).every((w) => w.status === 'READY'), 30_000, 'every model READY again');
  const after = await Promise.all(shared.map((m) => workerOf(server, m)));
  t.ok(
    after.every((w) => w.sharedHost && w.pid !== before),
    'each model is back in a shared host, not the dead one',
  );
  for (const name of shared) t.equal((await predict(server, name, 'hello')).status, 200, `${name} serves again`);
  await survived(t, server, { models: shared, sent: 3, answered: answers.length });
});

t.test('a crash in a shared host leaves a model with a process of its own (sharedWorker: false) serving', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      for (const [name, shares] of [
        ['s1', true],
        ['s2', true],
        ['own', false],
      ] as const) {
        const configFile = join(store, '..', `${name}.yaml`);
        writeFileSync(configFile, `sharedWorker: ${shares}\n`);
        buildMar(store, { modelName: name, version: '1.0', handler: join(FIXTURES, 'echo_handler.ts'), configFile });
      }
    },
    properties: { load_models: 's1.mar,s2.mar,own.mar' },
  });
  const own = await workerOf(server, 'own');
  t.notOk(own.sharedHost, 'own has a process of its own');
  const held = predict(server, 'own', 'sleep:1500');
  await requestsArrived(server, 'own', 1);
  const crash = await predict(server, 's1', 'crash');
  t.equal(crash.status, 500, "s1's crashing request: 500");
  t.equal((await held).status, 200, "own's request in flight meanwhile is answered by its handler");
  t.equal((await workerOf(server, 'own')).pid, own.pid, 'own kept its process');
  await waitFor(async () => (await workerOf(server, 's2')).status === 'READY', 30_000, 's2 READY again');
  t.equal((await predict(server, 's2', 'hello')).status, 200, 's2, which shared the crashed host, serves again');
  await survived(t, server, { models: ['s1', 's2', 'own'], sent: 2, answered: 2 });
});

// A handler that crashes a shared worker host (workers/shared-hosts.ts) takes down only what it
// shares: every request in flight for every model in that process is answered 500 "Worker died.",
// while the models in other processes answer theirs; the crashed host's models restart, in
// another host, and all of them serve again.
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { predict, register, serve } from '../echo-model.js';
import { buildMar, errorBody, FIXTURES, requestsArrived, startTestServer, waitFor } from '../helpers.js';
import { sharedWorkers } from '../shared-workers.js';
import { survived } from './survival.js';

t.test('a crash in a shared host: every in-flight request of its models gets "Worker died.", then all serve again', async (t) => {
  const server = await serve(t, {}, 'sharedWorker: true\n');
  // One more model than cores: at least two share a process (shared workers spread over the cores first).
  const names = Array.from({ length: availableParallelism() + 1 }, (_, i) => `e${i}`);
  for (const name of names) await register(t, server, name, { initial_workers: 1 });
  const before = await sharedWorkers(server, names);
  const crasher = names.find((n) => names.some((m) => m !== n && before.get(m)!.pid === before.get(n)!.pid))!;
  const dead = before.get(crasher)!.pid;
  const others = names.filter((n) => n !== crasher);
  const sharing = others.filter((n) => before.get(n)!.pid === dead);
  t.ok(sharing.length > 0, `${crasher} shares its process with ${sharing.join(', ')}`);

  // Every other model has a request running when the crasher's handler aborts its process.
  const held = others.map((n) => predict(server, n, 'sleep:4000'));
  for (const n of others) await requestsArrived(server, n, 1);
  const crash = await predict(server, crasher, 'crash');
  t.equal(crash.status, 500, "the crashing model's request: 500");
  const answers = await Promise.all(held);
  for (const [i, res] of answers.entries()) {
    const name = others[i]!;
    if (sharing.includes(name)) {
      t.equal(res.status, 500, `${name}, in the crashed process: 500`);
      t.same(await errorBody(res), { code: 500, type: 'InternalServerException', message: 'Worker died.' }, `${name}: "Worker died."`);
    } else {
      t.equal(res.status, 200, `${name}, in another process: answered by its handler`);
      t.equal(before.get(name)!.pid, (await sharedWorkers(server, [name])).get(name)!.pid, `${name} kept its process`);
    }
  }

  await waitFor(async () => [...(await sharedWorkers(server, names)).values()].every((w) => w.status === 'READY'), 30_000, 'every model READY again');
  const after = await sharedWorkers(server, names);
  t.ok(
    [crasher, ...sharing].every((n) => after.get(n)!.sharedHost && after.get(n)!.pid !== dead),
    "the crashed process's models are back in a shared host, not the dead one",
  );
  for (const name of names) t.equal((await predict(server, name, 'hello')).status, 200, `${name} serves again`);
  await survived(t, server, { models: names, sent: names.length, answered: answers.length + 1 });
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
  const own = (await sharedWorkers(server, ['own'])).get('own')!;
  t.notOk(own.sharedHost, 'own has a process of its own');
  const held = predict(server, 'own', 'sleep:1500');
  await requestsArrived(server, 'own', 1);
  const crash = await predict(server, 's1', 'crash');
  t.equal(crash.status, 500, "s1's crashing request: 500");
  t.equal((await held).status, 200, "own's request in flight meanwhile is answered by its handler");
  t.equal((await sharedWorkers(server, ['own'])).get('own')!.pid, own.pid, 'own kept its process');
  await waitFor(async () => (await sharedWorkers(server, ['s1'])).get('s1')?.status === 'READY', 30_000, 's1 READY again');
  for (const name of ['s1', 's2']) t.equal((await predict(server, name, 'hello')).status, 200, `${name} serves`);
  await survived(t, server, { models: ['s1', 's2', 'own'], sent: 2, answered: 2 });
});

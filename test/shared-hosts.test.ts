// Small models sharing worker processes (issue 33; workers/shared-hosts.ts): several models answer
// from one process, each with its own handler; unloading one leaves the others serving in it; a
// model marked not shared keeps a process of its own.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { describe, predict, register, serve } from './echo-model.js';
import { buildMnistMar, MNIST_DIR, startTestServer, waitFor } from './helpers.js';
import { readFileSync } from 'node:fs';

interface SharedDescribed {
  workers: Array<{ pid: number; status: string; sharedHost: boolean }>;
}

async function workerOf(server: Parameters<typeof describe>[0], model: string): Promise<SharedDescribed['workers'][number]> {
  return ((await describe(server, model)) as unknown as SharedDescribed).workers[0]!;
}

t.test('several models in one shared host each answer with their own handler', async (t) => {
  const server = await serve(t, {}, 'sharedWorker: true\n');
  for (const name of ['a', 'b', 'c']) await register(t, server, name, { initial_workers: 1 });
  const workers = await Promise.all(['a', 'b', 'c'].map((m) => workerOf(server, m)));
  t.ok(
    workers.every((w) => w.sharedHost && w.status === 'READY'),
    'every worker is READY in a shared host',
  );
  t.equal(new Set(workers.map((w) => w.pid)).size, 1, 'the three workers share one process');
  for (const name of ['a', 'b', 'c']) {
    const res = await predict(server, name, `hello ${name}`);
    t.equal(res.status, 200, `${name} answers`);
    const body = (await res.json()) as { body: string; batchSize: number };
    t.match(body, { batchSize: 1 }, `${name}'s own request comes back: ${JSON.stringify(body)}`);
  }
});

t.test('unregistering or scaling one shared model to 0 leaves the others serving in the same process', async (t) => {
  const server = await serve(t, {}, 'sharedWorker: true\n');
  for (const name of ['a', 'b', 'c']) await register(t, server, name, { initial_workers: 1 });
  const pid = (await workerOf(server, 'a')).pid;
  const gone = await fetch(`${server.urls.management}/models/b`, { method: 'DELETE' });
  t.equal(gone.status, 200, 'b unregistered');
  const scaled = await fetch(`${server.urls.management}/models/c?min_worker=0&max_worker=0&synchronous=true`, { method: 'PUT' });
  t.equal(scaled.status, 200, 'c scaled to no worker');
  t.equal((await predict(server, 'a', 'still here')).status, 200, 'a still answers');
  t.equal((await workerOf(server, 'a')).pid, pid, 'a is in the process it was in: b and c were unloaded from it, not killed with it');
  const back = await fetch(`${server.urls.management}/models/c?min_worker=1&max_worker=1&synchronous=true`, { method: 'PUT' });
  t.equal(back.status, 200, 'c scaled back to one worker');
  t.equal((await predict(server, 'c', 'again')).status, 200, 'c answers again');
  t.equal((await workerOf(server, 'c')).pid, pid, 'c loaded again into the running host');
});

t.test('shared_worker_model_mb shares small models; sharedWorker: false keeps its own process', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      const own = join(store, '..', 'own-config.yaml');
      writeFileSync(own, 'sharedWorker: false\n');
      buildMnistMar(store, 'small1');
      buildMnistMar(store, 'small2');
      buildMnistMar(store, 'own', { configFile: own });
    },
    properties: { shared_worker_model_mb: '10', load_models: 'small1.mar,small2.mar,own.mar' },
  });
  await waitFor(async () => (await workerOf(server, 'own'))?.status === 'READY', 60_000, 'own READY');
  const [small1, small2, own] = await Promise.all(['small1', 'small2', 'own'].map((m) => workerOf(server, m)));
  t.ok(small1!.sharedHost && small2!.sharedHost, 'models under 10 MB share');
  t.equal(small1!.pid, small2!.pid, 'in one process');
  t.notOk(own!.sharedHost, 'sharedWorker: false has a process of its own');
  t.not(own!.pid, small1!.pid, 'not the shared one');
  const digit = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  for (const name of ['small1', 'small2', 'own']) {
    const res = await fetch(`${server.urls.inference}/predictions/${name}`, { method: 'POST', body: digit });
    t.equal(res.status, 200, `${name} answers`);
    t.equal((await res.text()).trim(), '7', `${name} reads the digit`);
  }
});

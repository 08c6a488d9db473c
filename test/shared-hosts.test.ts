// Small models sharing worker processes (issue 33; workers/shared-hosts.ts): several models answer
// from one process, each with its own handler; unloading one leaves the others serving in it; a
// model marked not shared keeps a process of its own. Shared workers spread over as many
// processes as there are cores first, so one more model than cores puts two in one process.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildWarmEcho, predict, register, serve } from './echo-model.js';
import { buildMnistMar, MNIST_DIR, startTestServer, waitFor } from './helpers.js';
import { sharedWorkers } from './shared-workers.js';

/** One more echo model than cores, each registered with one worker in a shared host. */
async function sharingEchoModels(t: Test): Promise<{ server: Awaited<ReturnType<typeof serve>>; names: string[] }> {
  const server = await serve(t, {}, 'sharedWorker: true\n');
  const names = Array.from({ length: availableParallelism() + 1 }, (_, i) => `e${i}`);
  for (const name of names) await register(t, server, name, { initial_workers: 1 });
  return { server, names };
}

t.test('several models in one shared host each answer with their own handler', async (t) => {
  const { server, names } = await sharingEchoModels(t);
  const workers = await sharedWorkers(server, names);
  t.ok(
    [...workers.values()].every((w) => w.sharedHost && w.status === 'READY'),
    'every worker is READY in a shared host',
  );
  t.ok(new Set([...workers.values()].map((w) => w.pid)).size < names.length, 'fewer processes than models: some share one');
  for (const name of names) {
    const res = await predict(server, name, `hello ${name}`);
    t.equal(res.status, 200, `${name} answers`);
    const body = (await res.json()) as { params: { body: { value: string } } };
    t.equal(body.params.body.value, `hello ${name}`, `${name}'s own request comes back`);
  }
});

t.test('unregistering or scaling one shared model to 0 leaves the others serving in the same process', async (t) => {
  const { server, names } = await sharingEchoModels(t);
  const workers = await sharedWorkers(server, names);
  const [x, y] = names.filter((n) => names.some((m) => m !== n && workers.get(m)!.pid === workers.get(n)!.pid));
  const pid = workers.get(y!)!.pid;
  t.equal(workers.get(x!)!.pid, pid, `${x} and ${y} share a process`);
  const gone = await fetch(`${server.urls.management}/models/${x}`, { method: 'DELETE' });
  t.equal(gone.status, 200, `${x} unregistered`);
  t.equal((await predict(server, y!, 'still here')).status, 200, `${y} still answers`);
  t.equal((await sharedWorkers(server, [y!])).get(y!)!.pid, pid, `${y} is in the process it was in: ${x} was unloaded from it, not killed with it`);
  const scaled = await fetch(`${server.urls.management}/models/${y}?min_worker=0&max_worker=0&synchronous=true`, { method: 'PUT' });
  t.equal(scaled.status, 200, `${y} scaled to no worker`);
  const back = await fetch(`${server.urls.management}/models/${y}?min_worker=1&max_worker=1&synchronous=true`, { method: 'PUT' });
  t.equal(back.status, 200, `${y} scaled back to one worker`);
  t.equal((await predict(server, y!, 'again')).status, 200, `${y} answers again`);
  t.ok((await sharedWorkers(server, [y!])).get(y!)!.sharedHost, `${y} is in a shared host again`);
});

t.test(
  "a shared host warms a model up with its warmupFile alone, not as the largest batch: loads there are on demand and their CPU is the busy models'",
  async (t) => {
    const server = await startTestServer(t, {
      prepare: (store) => buildWarmEcho(store, 'sharedWorker: true\n'),
    });
    await register(t, server, 'warm', { url: 'warm.mar', initial_workers: 1, batch_size: 4 });
    t.ok((await sharedWorkers(server, ['warm'])).get('warm')?.sharedHost, 'in a shared host');
    const modelLog = join(server.dir, 'logs', 'model_log.log');
    await waitFor(() => existsSync(modelLog) && readFileSync(modelLog, 'utf8').includes('Warm-up of model warm'), 10_000, 'the warm-up said');
    const log = readFileSync(modelLog, 'utf8');
    t.match(log, /Warm-up of model warm with sample\.txt: 1 batches in \d+ ms/, 'one batch');
    t.equal(log.split('echo handler was asked to print').length - 1, 1, 'one request through the handler, not 1 + 4');
    t.equal((await predict(server, 'warm', 'hello')).status, 200, 'it serves');
  },
);

t.test('shared_worker_model_mb shares small models; sharedWorker: false keeps its own process', async (t) => {
  const small = Array.from({ length: availableParallelism() + 1 }, (_, i) => `small${i}`);
  const server = await startTestServer(t, {
    prepare: (store) => {
      const own = join(store, '..', 'own-config.yaml');
      writeFileSync(own, 'sharedWorker: false\n');
      for (const name of small) buildMnistMar(store, name);
      buildMnistMar(store, 'own', { configFile: own });
    },
    properties: { shared_worker_model_mb: '10', load_models: [...small, 'own'].map((n) => `${n}.mar`).join(',') },
  });
  await waitFor(async () => (await sharedWorkers(server, ['own'])).get('own')?.status === 'READY', 60_000, 'own READY');
  const workers = await sharedWorkers(server, [...small, 'own']);
  t.ok(
    small.every((n) => workers.get(n)!.sharedHost),
    'models under 10 MB share',
  );
  t.ok(new Set(small.map((n) => workers.get(n)!.pid)).size < small.length, 'some in one process');
  const own = workers.get('own')!;
  t.notOk(own.sharedHost, 'sharedWorker: false has a process of its own');
  t.notOk(
    small.some((n) => workers.get(n)!.pid === own.pid),
    'not a shared one',
  );
  const digit = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  for (const name of [...small, 'own']) {
    const res = await fetch(`${server.urls.inference}/predictions/${name}`, { method: 'POST', body: digit });
    t.equal(res.status, 200, `${name} answers`);
    t.equal((await res.text()).trim(), '7', `${name} reads the digit`);
  }
});

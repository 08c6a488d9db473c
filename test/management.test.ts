// The management API basics: list, describe, register, scale, unregister, model API control.
import { join } from 'node:path';
import t from 'tap';
import { buildMar, buildMnistMar, FIXTURES, startTestServer, waitFor, waitReady } from './helpers.js';

type Describe = Array<{
  modelName: string;
  modelVersion: string;
  minWorkers: number;
  maxWorkers: number;
  workers: Array<{ id: string; status: string; pid: number }>;
  loadedAtStartup: boolean;
}>;

t.test('register synchronously, describe, scale up and down, unregister', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store) });
  const mgmt = server.urls.management;

  const reg = await fetch(`${mgmt}/models?url=mnist.mar&initial_workers=1&synchronous=true`, { method: 'POST' });
  t.equal(reg.status, 200);
  t.equal(await reg.text(), '{\n  "status": "Model \\"mnist\\" Version: 1.0 registered with 1 initial workers"\n}\n');

  const [d] = (await (await fetch(`${mgmt}/models/mnist`)).json()) as Describe;
  t.match(d, { modelName: 'mnist', modelVersion: '1.0', minWorkers: 1, maxWorkers: 1, loadedAtStartup: false });
  t.equal(d!.workers.length, 1);
  t.match(d!.workers[0], { id: /^\d+$/, status: 'READY' });
  t.ok(d!.workers[0]!.pid > 0, 'a real worker process');

  const up = await fetch(`${mgmt}/models/mnist?min_worker=2&synchronous=true`, { method: 'PUT' });
  t.equal(up.status, 200);
  t.same(await up.json(), { status: 'Workers scaled to 2 for model: mnist' });
  const [d2] = (await (await fetch(`${mgmt}/models/mnist/1.0`)).json()) as Describe;
  t.equal(d2!.workers.filter((w) => w.status === 'READY').length, 2);

  const down = await fetch(`${mgmt}/models/mnist?min_worker=0`, { method: 'PUT' });
  t.equal(down.status, 202);
  t.same(await down.json(), { status: 'Processing worker updates...' });
  await waitFor(async () => ((await (await fetch(`${mgmt}/models/mnist`)).json()) as Describe)[0]!.workers.length === 0, 10_000, 'scale to 0');

  const invalid = await fetch(`${mgmt}/models/mnist?min_worker=2&max_worker=1`, { method: 'PUT' });
  t.equal(invalid.status, 400);
  t.same(await invalid.json(), { code: 400, type: 'BadRequestException', message: 'max_worker cannot be less than min_worker.' });

  const del = await fetch(`${mgmt}/models/mnist`, { method: 'DELETE' });
  t.equal(del.status, 200);
  t.same(await del.json(), { status: 'Model "mnist" unregistered' });
  const gone = await fetch(`${mgmt}/models/mnist`);
  t.equal(gone.status, 404);
  t.same(await gone.json(), { code: 404, type: 'ModelNotFoundException', message: 'Model not found: mnist' });
});

t.test('registration answers: 0 workers, asynchronous, missing url, duplicate, unknown file', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store) });
  const mgmt = server.urls.management;
  const zero = await fetch(`${mgmt}/models?url=mnist.mar&model_name=idle&initial_workers=0`, { method: 'POST' });
  t.same(await zero.json(), { status: 'Model "idle" Version: 1.0 registered with 0 initial workers. Use scale workers API to add workers for the model.' });

  const async = await fetch(`${mgmt}/models?url=mnist.mar&initial_workers=1&synchronous=false`, { method: 'POST' });
  t.equal(async.status, 202);
  await waitReady(mgmt, 'mnist');

  const dup = await fetch(`${mgmt}/models?url=mnist.mar`, { method: 'POST' });
  t.equal(dup.status, 409);
  t.same(await dup.json(), { code: 409, type: 'ConflictStatusException', message: 'Model version 1.0 is already registered for model mnist' });

  const noUrl = await fetch(`${mgmt}/models`, { method: 'POST' });
  t.equal(noUrl.status, 400);
  t.same(await noUrl.json(), { code: 400, type: 'BadRequestException', message: 'Parameter url is required.' });

  const empty = await fetch(`${mgmt}/models?url=`, { method: 'POST' });
  t.equal(empty.status, 404);
  t.same(await empty.json(), { code: 404, type: 'ModelNotFoundException', message: 'empty url' });

  const missing = await fetch(`${mgmt}/models?url=nothing.mar`, { method: 'POST' });
  t.equal(missing.status, 404);
  t.same(await missing.json(), { code: 404, type: 'ModelNotFoundException', message: 'Model not found at: nothing.mar' });

  const list = (await (await fetch(`${mgmt}/models`)).json()) as { models: unknown[] };
  t.same(
    list,
    {
      models: [
        { modelName: 'idle', modelUrl: 'mnist.mar' },
        { modelName: 'mnist', modelUrl: 'mnist.mar' },
      ],
    },
    'sorted by name',
  );
});

t.test('a handler that fails to load: synchronous register answers 500 and leaves nothing registered', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'broken', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
  });
  const mgmt = server.urls.management;
  const res = await fetch(`${mgmt}/models?url=broken.mar&handler=no_such_handler&initial_workers=1`, { method: 'POST' });
  t.equal(res.status, 500);
  t.same(await res.json(), { code: 500, type: 'InternalServerException', message: 'Failed to start workers for model broken version: 1.0' });
  t.equal((await fetch(`${mgmt}/models/broken`)).status, 404);
});

t.test('register and unregister are 405 unless the model API is enabled; describe and scale stay open', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMnistMar(store),
    properties: { enable_model_api: 'false', load_models: 'mnist.mar', default_workers_per_model: '1' },
  });
  const mgmt = server.urls.management;
  for (const [method, path] of [
    ['POST', '/models?url=mnist.mar'],
    ['DELETE', '/models/mnist'],
  ] as const) {
    const res = await fetch(`${mgmt}${path}`, { method });
    t.equal(res.status, 405, `${method} ${path}`);
    t.same(await res.json(), { code: 405, type: 'MethodNotAllowedException', message: 'Requested method is not allowed, please refer to API document.' });
  }
  const [d] = (await (await fetch(`${mgmt}/models/mnist`)).json()) as Describe;
  t.equal(d!.loadedAtStartup, true, 'start-up models are allowed without the model API');
  t.equal((await fetch(`${mgmt}/models/mnist?min_worker=1`, { method: 'PUT' })).status, 202);
  t.equal((await fetch(`${mgmt}/models/mnist`, { method: 'PATCH' })).status, 405, 'other methods are 405');
});

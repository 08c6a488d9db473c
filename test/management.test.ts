// The management API with real worker processes: register, describe, scale up and down (real
// processes start and stop), unregister, and a handler that fails to load. Each call's answers,
// versions, paging and the model API switch are test/unit/management-routes.test.ts's, in process.
import { join } from 'node:path';
import t from 'tap';
import { buildMar, buildMnistMar, FIXTURES, startTestServer, waitFor } from './helpers.js';

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

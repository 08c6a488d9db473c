// Describe with customized=true: the handler describes itself through a request of its own
// (header `describe: True`), answered as `customizedMetadata`, as TorchServe does; BaseHandler's
// answer is the model's tensor metadata, where TorchServe's has none.
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, buildMnistMar, errorBody, FIXTURES, requestsArrived, startTestServer, type TestServer } from './helpers.js';

type Described = Record<string, unknown> & { customizedMetadata?: Record<string, unknown> };

async function describe(server: TestServer, path: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${server.urls.management}/models/${path}`);
  return { status: res.status, body: await res.json() };
}

function serveEcho(t: Test, properties: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    properties,
  });
}

t.test('BaseHandler describes the ONNX model: its inputs and outputs as KServe v2 metadata names them', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar', service_envelope: 'kserve' } });
  const plain = await describe(server, 'mnist');
  t.notOk('customizedMetadata' in (plain.body as Described[])[0]!, 'only when asked');
  const customized = await describe(server, 'mnist?customized=true');
  t.equal(customized.status, 200, 'the envelope does not try to read the describe request');
  const [d] = customized.body as Described[];
  t.same(d!.customizedMetadata, {
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 1, 28, 28] }],
    outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 10] }],
  });
  t.equal((await describe(server, 'mnist/1.0?customized=true')).status, 200, 'with a version too');
});

t.test("a handler's answer to the describe request becomes customizedMetadata; it runs in a batch of its own", async (t) => {
  const server = await serveEcho(t);
  const reg = await fetch(`${server.urls.management}/models?url=echo.mar&initial_workers=1&synchronous=true&batch_size=4&max_batch_delay=400`, {
    method: 'POST',
  });
  t.equal(reg.status, 200);
  const predictions = [1, 2].map(() => fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'x' }));
  // Once the two requests are in the batch being formed, ask for the description.
  await requestsArrived(server, 'echo', 2);
  const { status, body } = await describe(server, 'echo?customized=true');
  t.equal(status, 200);
  const [d] = body as Described[];
  t.match(d!.customizedMetadata, { batchSize: 1, params: {} }, "the echo handler's description of the request it got");
  for (const p of await Promise.all(predictions)) t.match(await p.json(), { batchSize: 2 }, 'the describe request did not join the predictions');
  const all = await describe(server, 'echo/all?customized=true');
  t.notOk('customizedMetadata' in (all.body as Described[])[0]!, 'ignored with /all');
});

t.test('customized=true without workers: 503, as TorchServe words it', async (t) => {
  const server = await serveEcho(t);
  t.equal((await fetch(`${server.urls.management}/models?url=echo.mar&initial_workers=0`, { method: 'POST' })).status, 200);
  const res = await fetch(`${server.urls.management}/models/echo?customized=true`);
  t.equal(res.status, 503);
  t.same(await errorBody(res), {
    code: 503,
    type: 'ServiceUnavailableException',
    message: 'Model "echo" has no worker to serve describe request. Please use scale workers API to add workers.',
  });
  t.equal((await fetch(`${server.urls.management}/models/echo`)).status, 200, 'a plain describe still works');
});

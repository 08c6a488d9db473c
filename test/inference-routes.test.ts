// The inference listener's other prediction routes, as TorchServe's: SageMaker's /invocations and
// /models/{m}/invoke, the legacy /{m}/predict, OPTIONS describing a model, and one listener
// serving inference and management together.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { grpcClient, unaryCall } from './grpc-client.js';
import { buildMar, buildMnistMar, errorBody, FIXTURES, freePort, MNIST_DIR, startTestServer, type TestServer } from './helpers.js';

/** What test/fixtures/echo_handler.ts answers. */
interface Echo {
  explain?: string;
  urlPath?: string;
  params: Record<string, { kind: string; value: unknown }>;
}

function serve(t: Test, models: string, properties: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => {
      buildMnistMar(store);
      buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
    },
    properties: { load_models: models, ...properties },
  });
}

async function echo(res: Response): Promise<Echo> {
  if (res.status !== 200) throw new Error(`${res.status} ${await res.text()}`);
  return (await res.json()) as Echo;
}

t.test('/invocations: the model from ?model_name=, query parameters first as inputs, then the body', async (t) => {
  const server = await serve(t, 'mnist.mar,echo.mar');
  const answer = await echo(
    await fetch(`${server.urls.inference}/invocations?model_name=echo&topk=3`, { method: 'POST', body: 'hi', headers: { 'content-type': 'text/plain' } }),
  );
  t.same(answer.params, { model_name: { kind: 'bytes', value: 4 }, topk: { kind: 'bytes', value: 1 }, body: { kind: 'text', value: 'hi' } });
  t.equal(answer.explain, undefined, 'no explain header on SageMaker routes');

  const form = new FormData();
  form.set('model_name', 'echo');
  form.set('data', new Blob(['abc'], { type: 'text/plain' }), 'a.txt');
  const byField = await echo(await fetch(`${server.urls.inference}/invocations`, { method: 'POST', body: form }));
  t.same(Object.keys(byField.params).sort(), ['data', 'model_name'], 'a model_name form field names the model');

  const none = await fetch(`${server.urls.inference}/invocations`, { method: 'POST', body: 'x' });
  t.equal(none.status, 400, 'two start-up models and no model_name');
  t.same(await errorBody(none), { code: 400, type: 'BadRequestException', message: 'Parameter model_name is required.' });
  const unknown = await fetch(`${server.urls.inference}/invocations?model_name=nope`, { method: 'POST', body: 'x' });
  t.equal(unknown.status, 404);
  t.equal((await errorBody(unknown)).message, 'Model not found: nope');
});

t.test('/invocations without model_name serves the only model loaded at start-up', async (t) => {
  const server = await serve(t, 'echo.mar');
  const answer = await echo(await fetch(`${server.urls.inference}/invocations`, { method: 'POST', body: 'x' }));
  t.same(Object.keys(answer.params), ['body']);
});

t.test('/models/{m}/invoke and the legacy /{m}/predict, /{m}/{v}/predict', async (t) => {
  const server = await serve(t, 'mnist.mar,echo.mar');
  const invoke = await echo(await fetch(`${server.urls.inference}/models/echo/invoke?a=1`, { method: 'POST', body: 'x' }));
  t.same(Object.keys(invoke.params), ['a', 'body']);
  const legacy = await echo(await fetch(`${server.urls.inference}/echo/predict?a=1&a=22`, { method: 'POST', body: 'x' }));
  t.same(legacy.params.a, { kind: 'bytes', value: 2 }, 'a repeated query parameter: each value is an input, the last one wins');
  const versioned = await echo(await fetch(`${server.urls.inference}/echo/1.0/predict`, { method: 'POST', body: 'x' }));
  t.same(Object.keys(versioned.params), ['body']);
  const noVersion = await fetch(`${server.urls.inference}/echo/9.9/predict`, { method: 'POST', body: 'x' });
  t.equal(noVersion.status, 404);
  t.equal((await errorBody(noVersion)).message, 'Model version: 9.9 does not exist for model: echo');
  t.equal((await fetch(`${server.urls.inference}/models/echo/other`, { method: 'POST' })).status, 404, '/models/{m}/x is not a route');

  const digit = await fetch(`${server.urls.inference}/mnist/predict`, { method: 'POST', body: readFileSync(join(MNIST_DIR, 'digits', '7_0.png')) });
  t.equal(await digit.text(), '7', 'a real model answers through the legacy route');
});

t.test('OPTIONS on a prediction path describes the model; on a management path, its management', async (t) => {
  const server = await serve(t, 'echo.mar');
  const inference = await fetch(`${server.urls.inference}/predictions/echo`, { method: 'OPTIONS' });
  t.equal(inference.status, 200);
  const doc = (await inference.json()) as { openapi: string; info: { title: string }; paths: Record<string, unknown> };
  t.equal(doc.openapi, '3.0.1');
  t.equal(doc.info.title, 'RESTful API for: echo');
  t.same(Object.keys(doc.paths), ['/predictions/echo', '/v1/models/{model_name}:predict', '/v2/models/{model_name}/infer']);
  t.equal((await fetch(`${server.urls.inference}/predictions/nope`, { method: 'OPTIONS' })).status, 404);
  t.equal((await fetch(`${server.urls.inference}/predictions/echo/9.9`, { method: 'OPTIONS' })).status, 404);

  const management = await fetch(`${server.urls.management}/models/echo/1.0`, { method: 'OPTIONS' });
  t.equal(management.status, 200);
  t.equal(((await management.json()) as { info: { title: string } }).info.title, 'RESTful Management API for: echo');
  t.equal((await fetch(`${server.urls.management}/models/nope`, { method: 'OPTIONS' })).status, 404);
  t.equal((await fetch(`${server.urls.management}/models/echo`, { method: 'PATCH' })).status, 405, 'other methods are still 405');
});

t.test('one address for inference and management: one listener serves both, as TorchServe\'s "ALL" listener', async (t) => {
  const address = `http://127.0.0.1:${await freePort()}`;
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    properties: { load_models: 'echo.mar', inference_address: address, management_address: address },
  });
  const base = server.urls.inference!;
  t.equal(server.urls.management, base);
  t.same((await echo(await fetch(`${base}/predictions/echo`, { method: 'POST', body: 'x' }))).params.body, { kind: 'text', value: 'x' });
  t.equal((await fetch(`${base}/models/echo`)).status, 200, 'describe');
  const predictV1 = await fetch(`${base}/v1/models/echo:predict`, { method: 'POST', body: 'x' });
  t.equal(predictV1.status, 200, 'KServe v1 prediction');
});

t.test("a client's describe or explain header steers nothing: only the route says what a job is", async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar' } });
  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  const base = server.urls.inference;
  for (const [url, header] of [
    [`${base}/predictions/mnist`, 'describe'],
    [`${base}/predictions/mnist`, 'explain'],
    [`${base}/invocations?model_name=mnist`, 'explain'],
    [`${base}/mnist/predict`, 'explain'],
    [`${base}/models/mnist/invoke`, 'describe'],
  ] as const) {
    const res = await fetch(url, { method: 'POST', body: seven, headers: { 'content-type': 'application/octet-stream', [header]: 'True' } });
    t.same([res.status, await res.text()], [200, '7'], `${url.slice(base.length)} with ${header}: True is a prediction`);
  }
  const explained = await fetch(`${base}/explanations/mnist`, { method: 'POST', body: seven, headers: { explain: 'False' } });
  t.equal(((await explained.json()) as unknown[]).length, 1, '/explanations explains, whatever the client says');
  const grpc = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  const metadata = new Metadata();
  metadata.set('explain', 'True');
  const answer = await unaryCall(grpc, 'Predictions', { model_name: 'mnist', input: { data: seven } }, metadata);
  t.equal(String((answer.value as { prediction: Buffer }).prediction), '7', 'gRPC metadata the same');
});

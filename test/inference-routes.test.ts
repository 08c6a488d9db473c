// The inference listener's other prediction routes, as TorchServe's, with real workers: inputs as
// a handler receives them, a real model through the legacy route, one listener serving inference
// and management together, and what a client's headers cannot steer (REST and gRPC). Which model
// each route names, its inputs and its errors are test/unit/inference-routes.test.ts's, in process.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { grpcClient, unaryCall } from './grpc-client.js';
import { buildMar, buildMnistMar, FIXTURES, freePort, MNIST_DIR, startTestServer, type TestServer } from './helpers.js';

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

t.test('through a real worker: inputs keep their kinds on /invocations, a real model answers on the legacy route', async (t) => {
  const server = await serve(t, 'mnist.mar,echo.mar');
  const answer = await echo(
    await fetch(`${server.urls.inference}/invocations?model_name=echo&topk=3`, { method: 'POST', body: 'hi', headers: { 'content-type': 'text/plain' } }),
  );
  t.same(answer.params, { model_name: { kind: 'bytes', value: 4 }, topk: { kind: 'bytes', value: 1 }, body: { kind: 'text', value: 'hi' } });
  t.equal(answer.explain, undefined, 'no explain header on SageMaker routes');
  const legacy = await echo(await fetch(`${server.urls.inference}/echo/predict?a=1&a=22`, { method: 'POST', body: 'x' }));
  t.same(legacy.params.a, { kind: 'bytes', value: 2 }, 'a repeated query parameter: each value is an input, the last one wins');
  const digit = await fetch(`${server.urls.inference}/mnist/predict`, { method: 'POST', body: readFileSync(join(MNIST_DIR, 'digits', '7_0.png')) });
  t.equal(await digit.text(), '7', 'a real model answers through the legacy route');
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

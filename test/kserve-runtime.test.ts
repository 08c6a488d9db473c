// tsserve as KServe's stock TorchServe runtime starts it: KServe's config.properties (inference
// and management sharing one port, the models named by model_snapshot, enable_envvars_config),
// TS_SERVICE_ENVELOPE and TS_OPEN_INFERENCE_PROTOCOL from the environment, and the shipped
// model-store/mnist.mar. KServe's traffic arrives on the listeners TorchServe's KServe image
// serves with a wrapper (HTTP 8080, gRPC 8081; here on free ports); the requests are KServe's
// own MNIST samples, the gRPC client is built from KServe's grpc_predict_v2.proto.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import t, { type Test } from 'tap';
import { grpcClient, unaryCall, type GrpcClient } from './grpc-client.js';
import { buildMar, FIXTURES, freePort, ROOT, startTestServer, waitFor, type TestServer } from './helpers.js';

const SAMPLES = join(FIXTURES, 'kserve');
const sample = (name: string): Record<string, unknown> => JSON.parse(readFileSync(join(SAMPLES, name), 'utf8')) as Record<string, unknown>;

/** KServe's sample config.properties, on free ports; the KServe listeners on any free port. */
/** KServe's sample model_snapshot: mnist.mar, with `minWorkers` (1 in KServe's). */
function kserveSnapshot(minWorkers: number): string {
  return JSON.stringify({
    name: 'startup.cfg',
    modelCount: 1,
    models: {
      mnist: { '1.0': { defaultVersion: true, marName: 'mnist.mar', minWorkers, maxWorkers: 5, batchSize: 1, maxBatchDelay: 10, responseTimeout: 120 } },
    },
  });
}

const KSERVE_PROPERTIES = {
  enable_envvars_config: 'true',
  install_py_dep_per_model: 'true',
  metrics_mode: 'prometheus',
  metrics_format: 'prometheus',
  NUM_WORKERS: '1',
  number_of_netty_threads: '4',
  job_queue_size: '10',
  model_snapshot: kserveSnapshot(1),
  kserve_inference_address: 'http://127.0.0.1:0',
  kserve_grpc_inference_port: '0',
};

async function serveUnderKserve(t: Test, env: Record<string, string>, properties: Record<string, string> = {}): Promise<TestServer> {
  const server = await startTestServer(t, {
    prepare: (store) => copyFileSync(join(ROOT, 'model-store', 'mnist.mar'), join(store, 'mnist.mar')),
    // No front-end warm-up (test/envelope-warm-up's subject): until it ends /v2/health/ready is
    // false, as KServe's readiness probe should see it, and these tests ask at once.
    properties: { ...KSERVE_PROPERTIES, front_end_warmup_ms: '0', ...properties },
    env,
  });
  await waitFor(async () => (await fetch(`${server.urls.inference}/ping`)).ok, 30_000, 'mnist ready');
  return server;
}

const post = async (url: string, body: unknown): Promise<{ status: number; body: unknown }> => {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, body: await res.json() };
};

const v2Answer = (name: string, digit: number): object => ({
  id: 'd3b15cad-50a2-4eaf-80ce-8b0a428bd298',
  model_name: 'mnist',
  model_version: '1.0',
  outputs: [{ name, datatype: 'INT64', data: [digit], shape: [1] }],
});

/** A client of KServe's gRPC service, generated from KServe's own proto. */
function kserveGrpcClient(t: Test, address: string): GrpcClient {
  const definition = loadSync(join(SAMPLES, 'grpc_predict_v2.proto'), { keepCase: true, longs: Number, defaults: true });
  const Service = grpc.makeGenericClientConstructor(definition['inference.GRPCInferenceService'] as grpc.ServiceDefinition, 'inference.GRPCInferenceService');
  const client = new Service(address, grpc.credentials.createInsecure()) as unknown as GrpcClient;
  t.teardown(() => client.close());
  return client;
}

const int64Contents = (value: Record<string, unknown> | undefined): unknown =>
  (value?.outputs as Array<{ contents: { int64_contents: number[] } }> | undefined)?.[0]?.contents.int64_contents;

t.test("KServe v1 (TS_SERVICE_ENVELOPE=kserve): KServe's mnist.json on the KServe listener, its readiness and model list", async (t) => {
  const server = await serveUnderKserve(t, { TS_SERVICE_ENVELOPE: 'kserve' });
  t.ok(server.urls.kserve, 'the KServe HTTP listener is open');
  const predicted = await post(`${server.urls.kserve}/v1/models/mnist:predict`, sample('mnist_v1.json'));
  t.same(predicted, { status: 200, body: { predictions: [2] } }, "TorchServe's KServe test expects 2");
  t.same(await (await fetch(`${server.urls.kserve}/v1/models/mnist`)).json(), { name: 'mnist', ready: true });
  t.same(await (await fetch(`${server.urls.kserve}/v1/models`)).json(), { models: ['mnist'] });
  // KServe's v1 client checks liveness with GET / and reads "status"; TorchServe's own listeners keep their 405.
  const live = await fetch(`${server.urls.kserve}/`);
  t.same({ status: live.status, body: await live.json() }, { status: 200, body: { status: 'alive' } }, 'GET / on the KServe listener: alive');
  t.equal((await fetch(`${server.urls.kserve}/`, { method: 'POST' })).status, 405, 'other methods on / are not allowed');
  t.match(await (await fetch(`${server.urls.kserve}/`, { method: 'OPTIONS' })).json(), { paths: { '/': { get: {} } } }, 'OPTIONS / documents it');
  t.equal((await fetch(`${server.urls.inference}/`)).status, 405, "GET / on TorchServe's inference listener: 405, as its spec says");
  const unknown = await fetch(`${server.urls.kserve}/v1/models/nope:predict`, { method: 'POST', body: '{}' });
  t.equal(unknown.status, 404);
  t.same(
    await (await post(`${server.urls.inference}/v1/models/mnist:predict`, sample('mnist_v1.json'))).body,
    { predictions: [2] },
    'and on the inference address (8085)',
  );
});

t.test("KServe v2 and OIP (kservev2, TS_OPEN_INFERENCE_PROTOCOL=oip): KServe's tensor and BYTES samples over REST and both gRPC services", async (t) => {
  const server = await serveUnderKserve(t, { TS_SERVICE_ENVELOPE: 'kservev2', TS_OPEN_INFERENCE_PROTOCOL: 'oip' });
  for (const base of [server.urls.kserve!, server.urls.inference]) {
    t.same(
      await post(`${base}/v2/models/mnist/infer`, sample('mnist_v2_tensor.json')),
      { status: 200, body: v2Answer('input-0', 0) },
      `${base}: an FP32 [1, 28, 28] tensor of a 0`,
    );
    // The same digit as the model's own shape, [1, 1, 28, 28], in binary form (review-7 F6: a 400 before).
    const digit = sample('mnist_v2_tensor.json');
    const [tensor] = digit.inputs as Array<{ data: unknown[] }>;
    const values = Float32Array.from(tensor!.data.flat(3) as number[]);
    const header = Buffer.from(
      JSON.stringify({
        id: digit.id,
        inputs: [{ name: 'input-0', shape: [1, 1, 28, 28], datatype: 'FP32', parameters: { binary_data_size: values.byteLength } }],
      }),
    );
    const binary = await fetch(`${base}/v2/models/mnist/infer`, {
      method: 'POST',
      body: Buffer.concat([header, Buffer.from(values.buffer)]),
      headers: { 'inference-header-content-length': String(header.length), 'content-type': 'application/octet-stream' },
    });
    t.same(
      { status: binary.status, body: await binary.json() },
      { status: 200, body: v2Answer('input-0', 0) },
      `${base}: the same as [1, 1, 28, 28] in binary form`,
    );
    t.same(
      await post(`${base}/v2/models/mnist/infer`, sample('mnist_v2_bytes.json')),
      { status: 200, body: v2Answer('312a4eb0-0ca7-4803-a101-a6d2c18486fe', 0) },
      `${base}: a BYTES PNG with shape [-1]`,
    );
    t.same(await (await fetch(`${base}/v2/health/ready`)).json(), { ready: true });
    t.same(await (await fetch(`${base}/v2/health/live`)).json(), { live: true });
  }
  const bytesShapeMinusOne = sample('mnist_v2_bytes.json');
  (bytesShapeMinusOne.inputs as Array<Record<string, unknown>>)[0]!.shape = -1;
  t.equal((await post(`${server.urls.kserve}/v2/models/mnist/infer`, bytesShapeMinusOne)).status, 200, 'BYTES with "shape": -1');

  t.ok(server.urls.grpcKserve, 'the KServe gRPC listener is open');
  const kserve = kserveGrpcClient(t, server.urls.grpcKserve!);
  t.same(int64Contents((await unaryCall(kserve, 'ModelInfer', sample('mnist_v2_tensor_grpc.json'))).value), [0], 'KServe gRPC: fp32_contents');
  t.same(int64Contents((await unaryCall(kserve, 'ModelInfer', sample('mnist_v2_bytes_grpc.json'))).value), [0], 'KServe gRPC: bytes_contents, a PNG');
  t.same((await unaryCall(kserve, 'ServerReady', {})).value, { ready: true });
  t.same((await unaryCall(kserve, 'ModelReady', { name: 'mnist' })).value, { ready: true });

  const oip = grpcClient(t, server.urls.grpcInference, 'open_inference_grpc.proto', 'org.pytorch.serve.grpc.openinference.GRPCInferenceService');
  t.same(int64Contents((await unaryCall(oip, 'ModelInfer', sample('mnist_v2_tensor_grpc.json'))).value), [0], 'OIP gRPC: fp32_contents');
  t.same(int64Contents((await unaryCall(oip, 'ModelInfer', sample('mnist_v2_bytes_grpc.json'))).value), [0], 'OIP gRPC: bytes_contents, a PNG');
});

t.test('without TS_SERVICE_ENVELOPE the KServe listeners stay closed; enable_kserve_listeners opens or keeps them closed either way', async (t) => {
  // Which listeners open is the configuration's alone: mnist is served by no worker here (one
  // started, and its warm-up, were most of each server's cost).
  const noWorker = { model_snapshot: kserveSnapshot(0) };
  t.equal((await serveUnderKserve(t, {}, noWorker)).urls.kserve, undefined);
  const forced = await serveUnderKserve(t, {}, { ...noWorker, enable_kserve_listeners: 'true' });
  t.ok(forced.urls.kserve && forced.urls.grpcKserve);
  const refused = await serveUnderKserve(t, { TS_SERVICE_ENVELOPE: 'kserve' }, { ...noWorker, enable_kserve_listeners: 'false' });
  t.same([refused.urls.kserve, refused.urls.grpcKserve], [undefined, undefined]);
});

t.test('a KServe listener whose port another listener holds is left to it, and the server starts', async (t) => {
  const port = await freePort();
  const server = await serveUnderKserve(
    t,
    { TS_SERVICE_ENVELOPE: 'kserve' },
    {
      inference_address: `http://127.0.0.1:${port}`,
      kserve_inference_address: `http://0.0.0.0:${port}`,
    },
  );
  t.equal(server.urls.kserve, undefined);
  t.same(
    await (await post(`${server.urls.inference}/v1/models/mnist:predict`, sample('mnist_v1.json'))).body,
    { predictions: [2] },
    'the inference listener serves the KServe routes',
  );
});

t.test('readiness (REST v1 and v2, OIP gRPC) is false until a worker has the model loaded', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      const handler = join(store, 'broken_handler.ts');
      writeFileSync(handler, "export function handle(): never { throw new Error('this model never loads'); }\n");
      buildMar(store, { modelName: 'broken', version: '1.0', handler, serializedFile: join(ROOT, 'examples', 'mnist', 'mnist.onnx') });
    },
    properties: { load_models: 'broken.mar', ts_open_inference_protocol: 'true' },
  });
  const ready = await fetch(`${server.urls.inference}/v2/health/ready`);
  t.same({ status: ready.status, body: await ready.json() }, { status: 503, body: { ready: false } });
  t.same(await (await fetch(`${server.urls.inference}/v2/models/broken/ready`)).json(), { name: 'broken', ready: false });
  t.same(await (await fetch(`${server.urls.management}/v1/models/broken`)).json(), { name: 'broken', ready: false });
  const oip = grpcClient(t, server.urls.grpcInference, 'open_inference_grpc.proto', 'org.pytorch.serve.grpc.openinference.GRPCInferenceService');
  t.same((await unaryCall(oip, 'ServerReady', {})).value, { ready: false });
  t.same((await unaryCall(oip, 'ModelReady', { name: 'broken' })).value, { ready: false });
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, "while /ping, TorchServe's health, counts the loading worker");
  const [described] = (await (await fetch(`${server.urls.management}/models/broken`)).json()) as Array<{ serving: boolean }>;
  t.equal(described!.serving, false, 'describe says it cannot answer');
  const metrics = await (await fetch(`${server.urls.metrics}/metrics`)).text();
  t.match(metrics, /^ts_workers_ready\{model_name="broken",model_version="1.0",hostname="[^"]*",\} 0\.0$/m, 'and ts_workers_ready is 0');
});

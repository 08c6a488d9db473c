// TorchServe's gRPC APIs, called by a grpc-js client over 127.0.0.1: inference (Ping,
// Predictions, StreamPredictions) and management (the REST calls' answers and errors as gRPC
// statuses), tokens in metadata, and the access-log line of each call.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { grpcClient, unaryCall, type GrpcClient } from './grpc-client.js';
import { buildMar, buildMnistMar, FIXTURES, MNIST_DIR, requestsArrived, sharedServer, startTestServer, type TestServer } from './helpers.js';

interface Clients {
  inference: GrpcClient;
  management: GrpcClient;
}

function clients(t: Test, server: TestServer): Clients {
  return {
    inference: grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService'),
    management: grpcClient(t, server.urls.grpcManagement, 'management.proto', 'org.pytorch.serve.grpc.management.ManagementAPIsService'),
  };
}

const call = unaryCall;

/** mnist.mar and echo.mar in the store, both loaded at start-up unless `properties` names fewer in load_models. */
function serve(t: Test, properties: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => {
      buildMnistMar(store);
      buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
    },
    properties: { load_models: 'mnist.mar,echo.mar', ...properties },
  });
}

/** mnist and echo served from start-up, for the tests that only call them. */
const served = sharedServer((t) => serve(t));

const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));

t.test('inference: Ping, Predictions on the default and a named version, each input a parameter', async (t) => {
  const server = await served();
  const { inference } = clients(t, server);
  t.same(await call(inference, 'Ping', {}), { value: { health: '{\n  "status": "Healthy"\n}' }, code: grpc.status.OK });
  const digit = await call(inference, 'Predictions', { model_name: 'mnist', input: { data: seven } });
  t.equal(String(digit.value?.prediction), '7');
  const versioned = await call(inference, 'Predictions', { model_name: 'mnist', model_version: '1.0', input: { data: seven } });
  t.equal(String(versioned.value?.prediction), '7');
  const echoed = JSON.parse(
    String((await call(inference, 'Predictions', { model_name: 'echo', input: { a: Buffer.from('x'), b: Buffer.from('yz') } })).value?.prediction),
  ) as { params: Record<string, unknown> };
  t.same(echoed.params, { a: { kind: 'bytes', value: 1 }, b: { kind: 'bytes', value: 2 } }, 'no content type: bytes');
});

t.test("inference errors are TorchServe's statuses with the REST messages", async (t) => {
  const server = await served();
  const { inference } = clients(t, server);
  const cases: Array<[object, number, string | RegExp]> = [
    [{ model_name: '', input: {} }, grpc.status.INTERNAL, 'Parameter model_name is required.'],
    [{ model_name: 'nope', input: {} }, grpc.status.INTERNAL, 'Model not found: nope'],
    [{ model_name: 'mnist', model_version: '9', input: {} }, grpc.status.INTERNAL, 'Model version: 9 does not exist for model: mnist'],
    [{ model_name: 'echo', input: { body: Buffer.from('throw') } }, grpc.status.UNAVAILABLE, 'Prediction failed'],
    [{ model_name: 'echo', input: { body: Buffer.from('custom-599') } }, grpc.status.INTERNAL, 'custom failure'],
    [{ model_name: 'mnist', input: { data: Buffer.from('not an image') } }, grpc.status.INVALID_ARGUMENT, /^Invalid image/],
  ];
  for (const [request, code, details] of cases) {
    const answer = await call(inference, 'Predictions', request);
    t.equal(answer.code, code, JSON.stringify(request).slice(0, 70));
    t.match(answer.details, details);
  }
  t.equal((await call(inference, 'Ping', {})).code, grpc.status.OK, 'the server is up');
});

t.test('StreamPredictions: one message per intermediate answer, then the last', async (t) => {
  const server = await served();
  const { inference } = clients(t, server);
  const parts: string[] = [];
  const stream = inference.StreamPredictions!({ model_name: 'echo', input: { body: Buffer.from('stream:3') } });
  for await (const message of stream) parts.push(String(message.prediction));
  t.same(parts, ['part 0\n', 'part 1\n', 'part 2\n', 'last\n']);

  const failing = inference.StreamPredictions!({ model_name: 'nope', input: {} });
  const error = await new Promise<grpc.ServiceError>((resolve) => failing.on('error', resolve).on('data', () => {}));
  t.same([error.code, error.details], [grpc.status.INTERNAL, 'Model not found: nope']);
});

t.test('management: the REST answers as msg, REST errors as gRPC statuses', async (t) => {
  const server = await serve(t, { load_models: 'mnist.mar' });
  const { management, inference } = clients(t, server);
  const registered = await call(management, 'RegisterModel', { url: 'echo.mar', initial_workers: 1, synchronous: true });
  t.same(registered, { value: { msg: 'Model "echo" Version: 1.0 registered with 1 initial workers' }, code: grpc.status.OK });
  t.equal(JSON.parse(String((await call(inference, 'Predictions', { model_name: 'echo', input: { a: Buffer.from('x') } })).value?.prediction)).batchSize, 1);

  const described = await call(management, 'DescribeModel', { model_name: 'echo' });
  t.match(JSON.parse(String(described.value?.msg)), [{ modelName: 'echo', modelVersion: '1.0', minWorkers: 1 }]);
  const customized = await call(management, 'DescribeModel', { model_name: 'echo', customized: true });
  t.match(JSON.parse(String(customized.value?.msg)), [{ modelName: 'echo', customizedMetadata: { batchSize: 1 } }], 'customized: the handler describes itself');
  const listed = JSON.parse(String((await call(management, 'ListModels', {})).value?.msg)) as { models: Array<{ modelName: string }> };
  t.same(
    listed.models.map((m) => m.modelName),
    ['echo', 'mnist'],
    'limit 0 is "not set": the first page, not an empty one',
  );
  t.same((await call(management, 'ScaleWorker', { model_name: 'echo', min_worker: 2, synchronous: true })).value, {
    msg: 'Workers scaled to 2 for model: echo',
  });
  t.same((await call(management, 'SetDefault', { model_name: 'echo', model_version: '1.0' })).value, {
    msg: 'Default version successfully updated for model "echo" to "1.0"',
  });
  t.same((await call(management, 'UnregisterModel', { model_name: 'echo' })).value, { msg: 'Model "echo" unregistered' });

  const errors: Array<[string, object, number, string]> = [
    ['DescribeModel', { model_name: 'echo' }, grpc.status.NOT_FOUND, 'Model not found: echo'],
    ['RegisterModel', { url: '' }, grpc.status.INVALID_ARGUMENT, 'Parameter url is required.'],
    ['RegisterModel', { url: 'mnist.mar' }, grpc.status.ABORTED, 'Model version 1.0 is already registered for model mnist'],
    ['ScaleWorker', { model_name: 'mnist', min_worker: -1 }, grpc.status.INTERNAL, 'min_worker cannot be negative: -1'],
    ['SetDefault', { model_name: 'mnist', model_version: '2.0' }, grpc.status.NOT_FOUND, 'Model version 2.0 does not exist for model mnist'],
    // TorchServe reads the unset version as "" and answers set-default's own wording for it.
    ['SetDefault', { model_name: 'mnist' }, grpc.status.NOT_FOUND, 'Model version  does not exist for model mnist'],
    ['SetDefault', { model_name: 'nope' }, grpc.status.NOT_FOUND, 'Model not found: nope'],
    ['UnregisterModel', { model_name: '' }, grpc.status.INVALID_ARGUMENT, 'Parameter model_name is required.'],
  ];
  for (const [method, request, code, details] of errors) {
    t.same(await call(management, method, request), { code, details }, `${method} ${JSON.stringify(request)}`);
  }
});

t.test('model API off: RegisterModel and UnregisterModel are PERMISSION_DENIED "Model API disabled"', async (t) => {
  const server = await serve(t, { enable_model_api: 'false', load_models: 'mnist.mar' });
  const { management } = clients(t, server);
  t.same(await call(management, 'RegisterModel', { url: 'echo.mar' }), { code: grpc.status.PERMISSION_DENIED, details: 'Model API disabled' });
  t.same(await call(management, 'UnregisterModel', { model_name: 'mnist' }), { code: grpc.status.PERMISSION_DENIED, details: 'Model API disabled' });
  t.equal((await call(management, 'DescribeModel', { model_name: 'mnist' })).code, grpc.status.OK, 'describe still works');
});

t.test('tokens: the inference key on inference, the management key on management, in authorization metadata', async (t) => {
  // Keys are asked before any model is: the server needs none loaded (each is a worker started).
  const server = await serve(t, { disable_token_authorization: 'false', load_models: '' });
  const keys = JSON.parse(readFileSync(join(server.dir, 'key_file.json'), 'utf8')) as { management: { key: string }; inference: { key: string } };
  const { inference, management } = clients(t, server);
  const bearer = (key: string): grpc.Metadata => {
    const m = new grpc.Metadata();
    m.set('authorization', `Bearer ${key}`);
    return m;
  };
  const denied = { code: grpc.status.PERMISSION_DENIED, details: 'Token Authorization failed. Token either incorrect, expired, or not provided correctly' };
  t.same(await call(inference, 'Ping', {}), denied, 'no token');
  t.same(await call(inference, 'Ping', {}, bearer(keys.management.key)), denied, "the other API's key");
  t.equal((await call(inference, 'Ping', {}, bearer(keys.inference.key))).code, grpc.status.OK);
  t.same(await call(management, 'ListModels', {}), denied);
  t.equal((await call(management, 'ListModels', {}, bearer(keys.management.key))).code, grpc.status.OK);
});

t.test('the access log has one line per gRPC call, as TorchServe writes it', async (t) => {
  const server = await serve(t, { load_models: 'mnist.mar' });
  const { inference, management } = clients(t, server);
  await call(inference, 'Predictions', { model_name: 'mnist', input: { data: seven } });
  await call(management, 'DescribeModel', { model_name: 'nope' });
  await server.close();
  const lines = readFileSync(join(server.dir, 'logs', 'access_log.log'), 'utf8')
    .trim()
    .split('\n');
  t.match(lines, [
    /^\S+ - 127\.0\.0\.1:\d+ "gRPC org\.pytorch\.serve\.grpc\.inference\.InferenceAPIsService\/Predictions HTTP\/2\.0" 0 \d+$/,
    /^\S+ - 127\.0\.0\.1:\d+ "gRPC org\.pytorch\.serve\.grpc\.management\.ManagementAPIsService\/DescribeModel HTTP\/2\.0" 5 \d+$/,
  ]);
  t.equal(lines.length, 2, 'the REST call a management call runs as is not logged again');
});

t.test('bytes that are not gRPC on a gRPC port: the connection is dropped, the server serves on', async (t) => {
  const server = await served();
  const [host, port] = [server.urls.grpcInference.split(':')[0]!, Number(server.urls.grpcInference.split(':')[1])];
  for (const junk of [randomBytes(4096), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\u0000\u0000')]) {
    await new Promise<void>((resolve) => {
      const socket = connect(port, host, () => socket.end(junk));
      socket.on('data', () => {});
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
    });
  }
  const { inference } = clients(t, server);
  t.equal((await call(inference, 'Ping', {})).code, grpc.status.OK);
});

t.test('stopping the server: a gRPC call in flight is answered, as REST requests are (drain_timeout)', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  const { inference } = clients(t, server);
  t.equal((await call(inference, 'Ping', {})).code, grpc.status.OK, 'connected');
  const slow = call(inference, 'Predictions', { model_name: 'echo', input: { body: Buffer.from('sleep:1500') } });
  await requestsArrived(server, 'echo', 1);
  const closed = server.close();
  const answer = await slow;
  t.equal(answer.code, grpc.status.OK, `answered (${answer.details ?? 'ok'})`);
  await closed;
});

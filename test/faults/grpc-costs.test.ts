// gRPC messages that cost a client little and the server much (review finding F5): a map or
// repeated field with more entries than an HTTP body may have parts is refused before it is
// decoded, with the HTTP refusal's message; raw tensor bytes that do not make the declared shape,
// or whose JSON would pass max_request_size, are refused before they are expanded; and a StreamPredictions2 stream is not read ahead while
// its messages wait for a slow model (a paused stream would still read 16 ahead, decoded).
// The front end's memory stays bounded while it refuses.
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { serve } from '../echo-model.js';
import { waitReady } from '../helpers.js';
import { frontEndMemory } from './memory.js';
import { survived } from './survival.js';

const INFERENCE = 'org.pytorch.serve.grpc.inference.InferenceAPIsService';
const OIP = 'org.pytorch.serve.grpc.openinference.GRPCInferenceService';
const TOO_MANY = 'Request body has more than 1000 parts or form fields.';
const MB6 = 6 * 1024 * 1024;

/** Calls carrying messages this test encodes itself: a client that decoded 550,000 entries would cost this process what the server is spared. */
function rawClient(t: Test, address: string): grpc.Client {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
  t.teardown(() => client.close());
  return client;
}

const same = (b: Buffer): Buffer => b;

function unaryRaw(client: grpc.Client, path: string, message: Buffer): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, same, same, message, (err) =>
      resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' }),
    );
  });
}

/** A protobuf field: its tag, then (wire type 2) its length and bytes. */
function field(number: number, value: Buffer | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([varint(number * 8 + 2), varint(bytes.length), bytes]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return Buffer.from(out);
}

/** PredictionsRequest {model_name, input: `entries` map entries named k0, k1, …, without values (proto3's empty bytes)}, written in one buffer. */
function predictionsRequest(model: string, entries: number): Buffer {
  const head = field(1, model);
  const out = Buffer.alloc(head.length + entries * 16);
  let at = head.copy(out);
  for (let i = 0; i < entries; i++) {
    const key = `k${i}`;
    // Each entry and its key are under 128 bytes: one-byte lengths.
    at = out.writeUInt8(0x1a, at);
    at = out.writeUInt8(key.length + 2, at);
    at = out.writeUInt8(0x0a, at);
    at = out.writeUInt8(key.length, at);
    at += out.write(key, at, 'latin1');
  }
  return out.subarray(0, at);
}

t.test('StreamPredictions2: messages behind one the model never answers wait in the client, not decoded in the server', async (t) => {
  // The stop at the test's end does not wait for the prediction that never ends.
  const server = await serve(t, { load_models: 'echo.mar', drain_timeout: '1' });
  const client = rawClient(t, server.urls.grpcInference);
  const sequence = (body: Buffer): Buffer => Buffer.concat([field(1, 'echo'), field(3, Buffer.concat([field(1, 'body'), field(2, body)])), field(4, 's1')]);
  const stream = client.makeBidiStreamRequest(`/${INFERENCE}/StreamPredictions2`, same, same);
  stream.on('data', () => {});
  stream.on('error', () => {});
  stream.write(sequence(Buffer.from('hang')));
  const big = sequence(Buffer.alloc(MB6 - 1024, 0x61));
  let taken = 0;
  // At most 60 messages, each given 5 s to be taken: a server that reads ahead takes them all.
  for (let i = 0; i < 60; i++) {
    const took = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 5000);
      stream.write(big, () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!took) break;
    taken++;
  }
  t.ok(taken <= 1, `the server took ${taken} of 60 messages (what the HTTP/2 window holds at most): none is read while the one before it is answered`);
  stream.cancel();
  await survived(t, server, { models: ['echo'] });
});

t.test('TorchServe Predictions: more input entries than the HTTP parts limit are refused before decoding, as HTTP refuses them', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  const client = rawClient(t, server.urls.grpcInference);
  const predictions = `/${INFERENCE}/Predictions`;
  await waitReady(server.urls.management, 'echo');
  t.same(
    await unaryRaw(client, predictions, predictionsRequest('echo', 1000)),
    { code: grpc.status.OK, details: '' },
    '1000 entries are served, each an empty parameter',
  );
  const many = predictionsRequest('echo', 550_000);
  const memory = frontEndMemory();
  t.ok(many.length < 6553500, `550,000 entries fit max_request_size (${many.length} bytes)`);
  for (let i = 0; i < 4; i++) {
    t.same(await unaryRaw(client, predictions, many), { code: grpc.status.RESOURCE_EXHAUSTED, details: TOO_MANY }, `call ${i + 1}: refused`);
  }
  const stream = `/${INFERENCE}/StreamPredictions`;
  t.same(
    await new Promise((resolve) => {
      const call = client.makeServerStreamRequest(stream, same, same, predictionsRequest('echo', 1001));
      call.on('data', () => {});
      call.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
    }),
    { code: grpc.status.RESOURCE_EXHAUSTED, details: TOO_MANY },
    'StreamPredictions: refused as well',
  );
  memory.check(t);
  await survived(t, server, { models: ['echo'] });
});

/** A ModelInferRequest's input tensor: name, datatype, shape (packed). */
function tensor(name: string, datatype: string, shape: number[]): Buffer {
  return field(5, Buffer.concat([field(1, name), field(2, datatype), field(3, Buffer.concat(shape.map(varint)))]));
}

t.test(
  'OIP ModelInfer: too many inputs are refused before decoding; raw values that do not make the shape, or would make a body over max_request_size, before they are expanded',
  async (t) => {
    const server = await serve(t, { load_models: 'echo.mar', ts_open_inference_protocol: 'true' });
    const client = rawClient(t, server.urls.grpcInference);
    const infer = `/${OIP}/ModelInfer`;
    const inputs = Array.from({ length: 1001 }, (_, i) => tensor(`i${i}`, 'BOOL', [0]));
    t.same(
      await unaryRaw(client, infer, Buffer.concat([field(1, 'echo'), ...inputs])),
      { code: grpc.status.RESOURCE_EXHAUSTED, details: TOO_MANY },
      '1001 inputs',
    );
    const raws = Array.from({ length: 1001 }, () => field(7, Buffer.alloc(0)));
    t.same(
      await unaryRaw(client, infer, Buffer.concat([field(1, 'echo'), tensor('x', 'BOOL', [0]), ...raws])),
      { code: grpc.status.RESOURCE_EXHAUSTED, details: TOO_MANY },
      '1001 raw_input_contents',
    );

    const memory = frontEndMemory();
    // 6 MB of BOOL are 36 MB of JSON for the handler: more than max_request_size lets over HTTP.
    const bools = Buffer.concat([field(1, 'echo'), tensor('x', 'BOOL', [MB6]), field(7, Buffer.alloc(MB6, 1))]);
    for (let i = 0; i < 20; i++) {
      t.same(
        await unaryRaw(client, infer, bools),
        { code: grpc.status.RESOURCE_EXHAUSTED, details: 'Request body is larger than max_request_size (6553500 bytes).' },
        `call ${i + 1}: 6 MB of BOOL, refused before they are written as JSON`,
      );
    }
    const floats = Buffer.concat([field(1, 'echo'), tensor('x', 'FP32', [1]), field(7, Buffer.alloc(MB6, 1))]);
    t.same(
      await unaryRaw(client, infer, floats),
      { code: grpc.status.INVALID_ARGUMENT, details: `Input "x": shape [1] holds 1 values, raw_input_contents has ${MB6 / 4}` },
      '6 MB of FP32 for shape [1]: refused before they are expanded',
    );
    const unknown = Buffer.concat([field(1, 'nope'), tensor('x', 'BOOL', [MB6]), field(7, Buffer.alloc(MB6, 1))]);
    t.same(
      await unaryRaw(client, infer, unknown),
      { code: grpc.status.NOT_FOUND, details: 'Model not found: nope' },
      'an unknown model, before its input is expanded',
    );
    memory.check(t);
    await survived(t, server, { models: ['echo'] });
  },
);

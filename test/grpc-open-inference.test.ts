import * as grpc from '@grpc/grpc-js';
import sharp from 'sharp';
import t, { type Test } from 'tap';
import { grpcClient, unaryCall, type UnaryAnswer } from './grpc-client.js';
import { buildColoursMar, startTestServer, waitReady, type TestServer } from './helpers.js';

function serve(t: Test, oip: boolean): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => buildColoursMar(store),
    properties: { load_models: 'colours.mar', service_envelope: 'kservev2', ts_open_inference_protocol: String(oip) },
  });
}

function oipClient(t: Test, server: TestServer): (method: string, request: object) => Promise<UnaryAnswer> {
  const client = grpcClient(t, server.urls.grpcInference, 'open_inference_grpc.proto', 'org.pytorch.serve.grpc.openinference.GRPCInferenceService');
  return (method, request) => unaryCall(client, method, request);
}

/**
 * The most probable class in an image_classifier answer carried as BYTES: typed contents, or
 * raw_output_contents (a 4-byte length, then the element) when the call sent raw inputs.
 */
function topClass(answer: UnaryAnswer): string {
  const outputs = answer.value?.outputs as Array<{ contents: { bytes_contents: Buffer[] } | null }>;
  const raw = (answer.value?.raw_output_contents as Buffer[] | undefined)?.[0];
  const element = outputs[0]!.contents?.bytes_contents[0] ?? raw!.subarray(4, 4 + raw!.readUInt32LE(0));
  const scores = JSON.parse(element.toString('utf8')) as Record<string, number>;
  return Object.entries(scores).sort((a, b) => b[1] - a[1])[0]![0];
}

const PLANE = 224 * 224;
/** A transformed image, strong in one colour plane only. */
const planeTensor = (channel: number): number[] => Array.from({ length: 3 * PLANE }, (_, i) => (Math.floor(i / PLANE) === channel ? 2 : -2));

t.test('server and model health, metadata', async (t) => {
  const server = await serve(t, true);
  const call = oipClient(t, server);
  await waitReady(server.urls.management, 'colours');
  t.same((await call('ServerLive', {})).value, { live: true });
  t.same((await call('ServerReady', {})).value, { ready: true });
  t.match((await call('ServerMetadata', {})).value, { name: 'Torchserve', extensions: ['kserve', 'kubeflow'] });
  t.same((await call('ModelReady', { name: 'colours' })).value, { ready: true });
  t.same(
    (await call('ModelMetadata', { name: 'colours' })).value,
    {
      name: 'colours',
      versions: ['1.0'],
      platform: '',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, 224, 224] }],
      outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 3] }],
    },
    "the tensors from BaseHandler's description of the ONNX model",
  );
  const unknown = await call('ModelReady', { name: 'nope' });
  t.same(unknown, { code: grpc.status.NOT_FOUND, details: 'Model not found: nope' });
});

t.test('ModelInfer: typed contents, raw contents and BYTES reach the handler as v2 JSON; the answer comes back typed', async (t) => {
  const call = oipClient(t, await serve(t, true));
  const typed = await call('ModelInfer', {
    model_name: 'colours',
    id: 'r1',
    inputs: [{ name: 'input-0', datatype: 'FP32', shape: [3, 224, 224], contents: { fp32_contents: planeTensor(1) } }],
  });
  t.equal(typed.code, grpc.status.OK);
  t.match(typed.value, { id: 'r1', model_name: 'colours', model_version: '1.0', outputs: [{ name: 'input-0', datatype: 'BYTES', shape: [1] }] });
  t.equal(topClass(typed), '1');

  const raw = Buffer.alloc(3 * PLANE * 4);
  for (const [i, v] of planeTensor(0).entries()) raw.writeFloatLE(v, i * 4);
  const fromRaw = await call('ModelInfer', {
    model_name: 'colours',
    inputs: [{ name: 'img', datatype: 'FP32', shape: [3, 224, 224] }],
    raw_input_contents: [raw],
  });
  t.equal(topClass(fromRaw), '0', 'raw little-endian FP32');
  t.match(fromRaw.value, { outputs: [{ name: 'img', datatype: 'BYTES', shape: [1], contents: null }] }, 'raw inputs are answered raw, as KServe answers them');

  const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 10, g: 10, b: 250 } } })
    .png()
    .toBuffer();
  const bytes = await call('ModelInfer', {
    model_name: 'colours',
    inputs: [{ name: 'img', datatype: 'BYTES', shape: [-1], contents: { bytes_contents: [png] } }],
  });
  t.equal(topClass(bytes), '2', 'an image as BYTES reaches the handler base64-encoded, as TorchServe sends it');
  const rawBytes = Buffer.concat([Buffer.alloc(4), png]);
  rawBytes.writeUInt32LE(png.length, 0);
  const fromRawBytes = await call('ModelInfer', {
    model_name: 'colours',
    inputs: [{ name: 'img', datatype: 'BYTES', shape: [1] }],
    raw_input_contents: [rawBytes],
  });
  t.equal(topClass(fromRawBytes), '2', 'raw BYTES (length, then the bytes) the same way');
});

t.test('ModelInfer errors: the REST and envelope messages with their gRPC statuses', async (t) => {
  const call = oipClient(t, await serve(t, true));
  t.same(await call('ModelInfer', { model_name: 'nope', inputs: [] }), { code: grpc.status.NOT_FOUND, details: 'Model not found: nope' });
  const misshaped = await call('ModelInfer', {
    model_name: 'colours',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 2], contents: { fp32_contents: [1, 2, 3] } }],
  });
  t.same(misshaped, { code: grpc.status.INVALID_ARGUMENT, details: 'Input "x": shape [2, 2] holds 4 values, "data" has 3' });
  const broken = await call('ModelInfer', {
    model_name: 'colours',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }],
    raw_input_contents: [Buffer.from([1, 2, 3])],
  });
  t.same(broken, { code: grpc.status.INVALID_ARGUMENT, details: 'Input "x": 3 raw bytes are not whole FP32 values' });
  t.same((await call('ServerLive', {})).value, { live: true }, 'the server is up');
});

t.test('without ts_open_inference_protocol the service is not there', async (t) => {
  const call = oipClient(t, await serve(t, false));
  t.equal((await call('ServerLive', {})).code, grpc.status.UNIMPLEMENTED);
});

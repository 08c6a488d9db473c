// Tensors without JSON through a real server: KServe's and Triton's binary tensor data extension
// over REST and raw contents over gRPC give the answers the same tensors give as JSON, and the
// requests their clients build parse. Neither python `tritonclient` nor `kserve` is installed on
// these machines, so their bytes are built here from the layout their clients write
// (tritonclient's InferInput.set_data_from_numpy(binary_data=True) and InferRequestedOutput
// (binary_data=True); kserve's InferRequest.to_rest with InferenceRESTClient's headers).
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { grpcClient, unaryCall, type UnaryAnswer } from './grpc-client.js';
import { buildColoursMar, buildMar, errorBody, FIXTURES, MNIST_DIR, sameLarge, seededRandom, sharedServer, type TestServer } from './helpers.js';

const SHAPE = [1, 3, 224, 224];
const COUNT = 3 * 224 * 224;

const server = sharedServer((t) =>
  import('./helpers.js').then(({ startTestServer }) =>
    startTestServer(t, {
      prepare: (store) => {
        buildColoursMar(store);
        buildMar(store, {
          modelName: 'tensors',
          version: '1.0',
          handler: join(FIXTURES, 'tensor_handler.ts'),
          serializedFile: join(FIXTURES, 'colour_segmenter.onnx'),
        });
        buildMar(store, { modelName: 'digits', version: '1.0', handler: 'base_handler', serializedFile: join(MNIST_DIR, 'mnist.onnx') });
      },
      properties: { load_models: 'colours.mar,tensors.mar,digits.mar', service_envelope: 'kservev2', ts_open_inference_protocol: 'true' },
    }),
  ),
);

/** A 600 KB FP32 tensor of seeded values, as float32 (what JSON and bytes both carry exactly). */
function tensor(seed: number): Float32Array {
  const random = seededRandom(seed);
  return Float32Array.from({ length: COUNT }, () => random() * 4 - 2);
}

function bytesOf(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

/** A request in the extension's form: the JSON header, then the tensors' bytes; its header length in the header. */
function binaryRequest(header: object, tensors: Buffer[], contentType = 'application/octet-stream'): RequestInit {
  const json = Buffer.from(JSON.stringify(header));
  return {
    method: 'POST',
    body: Buffer.concat([json, ...tensors]),
    headers: { 'inference-header-content-length': String(json.length), 'content-type': contentType },
  };
}

interface V2Output {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: { binary_data_size?: number };
}

/** A v2 answer, JSON or binary, as its JSON header and each output's bytes (binary ones). */
async function v2Answer(res: Response): Promise<{ header: { id: string; outputs: V2Output[] }; bytes: Buffer[] }> {
  const body = Buffer.from(await res.arrayBuffer());
  const length = res.headers.get('inference-header-content-length');
  const header = JSON.parse(body.subarray(0, length === null ? body.length : Number(length)).toString('utf8'));
  const bytes: Buffer[] = [];
  let at = Number(length ?? body.length);
  for (const o of header.outputs as V2Output[]) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    bytes.push(body.subarray(at, at + size));
    at += size;
  }
  return { header, bytes };
}

function floatsOf(bytes: Buffer): Float32Array {
  return new Float32Array(Uint8Array.from(bytes).buffer);
}

const times4 = (values: Float32Array): Float32Array => values.map((v) => Math.fround(v * 4));

t.test('REST: a 600 KB FP32 tensor in binary form answers what its JSON form answers, in binary when asked', async (t) => {
  const { urls } = await server();
  const url = `${urls.inference}/v2/models/tensors/infer`;
  const values = tensor(1);
  const json = await fetch(url, {
    method: 'POST',
    body: JSON.stringify({ id: 'j', inputs: [{ name: 'x', shape: SHAPE, datatype: 'FP32', data: Array.from(values) }] }),
    headers: { 'content-type': 'application/json' },
  });
  t.equal(json.status, 200);
  const fromJson = await v2Answer(json);
  t.match(fromJson.header.outputs, [{ name: 'x', datatype: 'FP32', shape: [COUNT] }], 'a Float32Array answer is an FP32 tensor');
  sameLarge(t, Float32Array.from(fromJson.header.outputs[0]!.data as number[]), times4(values), 'JSON: each value times four');

  const header = { id: 'b', inputs: [{ name: 'x', shape: SHAPE, datatype: 'FP32', parameters: { binary_data_size: COUNT * 4 } }] };
  const binary = await fetch(url, binaryRequest({ ...header, outputs: [{ name: 'x', parameters: { binary_data: true } }] }, [bytesOf(values)]));
  t.equal(binary.status, 200);
  t.equal(binary.headers.get('content-type'), 'application/octet-stream');
  const fromBinary = await v2Answer(binary);
  t.same(fromBinary.header, {
    id: 'b',
    model_name: 'tensors',
    model_version: '1.0',
    outputs: [{ name: 'x', datatype: 'FP32', shape: [COUNT], parameters: { binary_data_size: COUNT * 4 } }],
  });
  sameLarge(t, floatsOf(fromBinary.bytes[0]!), times4(values), 'binary: the same values, bit for bit');

  const unasked = await v2Answer(await fetch(url, binaryRequest(header, [bytesOf(values)])));
  sameLarge(
    t,
    Float32Array.from(unasked.header.outputs[0]!.data as number[]),
    times4(values),
    'binary inputs, no binary output asked: JSON outputs, as Triton answers',
  );
});

t.test(
  'REST: base_handler feeds a model of image inputs the tensor with its axes, as JSON and as bytes; a tensor of another size is a 400 (review-7 F6)',
  async (t) => {
    const { urls } = await server();
    const url = `${urls.inference}/v2/models/digits/infer`;
    // mnist's input is [batch, 1, 28, 28]: a request's 784 numbers were fed as [1, 784], a rank ONNX refused (503).
    const random = seededRandom(7);
    const digit = Float32Array.from({ length: 784 }, () => random());
    const input = { name: 'x', shape: [1, 1, 28, 28], datatype: 'FP32' };
    const json = await fetch(url, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ ...input, data: Array.from(digit) }] }),
      headers: { 'content-type': 'application/json' },
    });
    t.equal(json.status, 200, 'as JSON');
    const fromJson = await v2Answer(json);
    t.equal((fromJson.header.outputs[0]!.data as number[]).length, 10, 'ten scores');
    const binary = await fetch(url, binaryRequest({ inputs: [{ ...input, parameters: { binary_data_size: 784 * 4 } }] }, [bytesOf(digit)]));
    t.equal(binary.status, 200, 'as bytes');
    t.same((await v2Answer(binary)).header.outputs[0]!.data, fromJson.header.outputs[0]!.data, 'the same scores');
    const wrong = await fetch(url, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 100], datatype: 'FP32', data: Array(100).fill(0) }] }),
      headers: { 'content-type': 'application/json' },
    });
    t.equal(wrong.status, 400, 'a tensor of another size: a 400');
    t.match((await errorBody(wrong)).message, /Each input must have 784 numbers, the model's input \S+ being \[.*, 1, 28, 28\]: got 100/);
  },
);

t.test('REST: an image classifier gives the same answer to a tensor as JSON, as bytes, and as both mixed', async (t) => {
  const { urls } = await server();
  const url = `${urls.inference}/v2/models/colours/infer`;
  const green = Float32Array.from({ length: COUNT }, (_, i) => (Math.floor(i / (224 * 224)) === 1 ? 2 : -2));
  const red = green.map((_, i) => (i < 224 * 224 ? 2 : -2));
  const input = (name: string, values: Float32Array) => ({ name, shape: [3, 224, 224], datatype: 'FP32', data: Array.from(values) });
  const asBytes = (name: string) => ({ name, shape: [3, 224, 224], datatype: 'FP32', parameters: { binary_data_size: COUNT * 4 } });
  const json = (await (await fetch(url, { method: 'POST', body: JSON.stringify({ id: 'a', inputs: [input('g', green), input('r', red)] }) })).json()) as {
    outputs: V2Output[];
  };
  const mixed = await v2Answer(await fetch(url, binaryRequest({ id: 'a', inputs: [asBytes('g'), input('r', red)] }, [bytesOf(green)])));
  const both = await v2Answer(await fetch(url, binaryRequest({ id: 'a', inputs: [asBytes('g'), asBytes('r')] }, [bytesOf(green), bytesOf(red)])));
  t.same(mixed.header, json, 'one input as bytes, one as JSON');
  t.same(both.header, json, 'both as bytes');
  const top = (o: V2Output) => Object.entries(o.data![0] as Record<string, number>).sort((a, b) => b[1] - a[1])[0]![0];
  t.same(json.outputs.map(top), ['1', '0'], 'green, then red');

  const asked = await v2Answer(await fetch(url, binaryRequest({ inputs: [asBytes('g')], parameters: { binary_data_output: true } }, [bytesOf(green)])));
  t.match(asked.header.outputs, [{ name: 'g', datatype: 'BYTES', shape: [1] }]);
  const element = asked.bytes[0]!;
  t.equal(element.readUInt32LE(0), element.length - 4, 'a BYTES output in binary form: its length, then the element');
  t.same(JSON.parse(element.subarray(4).toString('utf8')), json.outputs[0]!.data![0], "the element is the handler's answer as JSON text");
});

t.test("Triton's and KServe's clients' binary requests parse", async (t) => {
  const { urls } = await server();
  const values = tensor(2);
  // tritonclient.http: binary inputs and outputs asked binary by name; its JSON has spaces (json.dumps).
  const triton = {
    inputs: [{ name: 'INPUT0', shape: SHAPE, datatype: 'FP32', parameters: { binary_data_size: COUNT * 4 } }],
    outputs: [{ name: 'INPUT0', parameters: { binary_data: true } }],
  };
  const tritonJson = Buffer.from(JSON.stringify(triton).replace(/([,:])/g, '$1 '));
  const res = await fetch(`${urls.inference}/v2/models/tensors/infer`, {
    method: 'POST',
    body: Buffer.concat([tritonJson, bytesOf(values)]),
    headers: { 'Inference-Header-Content-Length': String(tritonJson.length) },
  });
  t.equal(res.status, 200, 'Triton');
  sameLarge(t, floatsOf((await v2Answer(res)).bytes[0]!), times4(values));
  // With no outputs named, tritonclient asks every output binary with the request's binary_data_output.
  const unnamed = Buffer.from(JSON.stringify({ inputs: triton.inputs, parameters: { binary_data_output: true } }).replace(/([,:])/g, '$1 '));
  const all = await fetch(`${urls.inference}/v2/models/tensors/infer`, {
    method: 'POST',
    body: Buffer.concat([unnamed, bytesOf(values)]),
    headers: { 'Inference-Header-Content-Length': String(unnamed.length) },
  });
  sameLarge(t, floatsOf((await v2Answer(all)).bytes[0]!), times4(values), 'Triton, no outputs named');

  // kserve InferRequest.to_rest: orjson (no spaces), an id and model_name, binary_data_output for every output.
  const kserve = {
    id: '4b1e4d4e-0000-4000-8000-000000000000',
    model_name: 'tensors',
    inputs: [{ name: 'input-0', shape: SHAPE, datatype: 'FP32', parameters: { binary_data_size: COUNT * 4 } }],
    parameters: { binary_data_output: true },
  };
  const answer = await v2Answer(await fetch(`${urls.inference}/v2/models/tensors/infer`, binaryRequest(kserve, [bytesOf(values)])));
  t.equal(answer.header.id, kserve.id, 'KServe');
  sameLarge(t, floatsOf(answer.bytes[0]!), times4(values));
});

t.test('REST: malformed binary requests are 400s in the error table’s shape, and the server serves on', async (t) => {
  const { urls } = await server();
  const url = `${urls.inference}/v2/models/tensors/infer`;
  const head = { inputs: [{ name: 'x', shape: [4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] };
  const good = binaryRequest(head, [Buffer.alloc(16)]);
  const cases: Array<[string, RequestInit, string]> = [
    ['header length past the body', { ...good, headers: { 'inference-header-content-length': '100000' } }, 'is not a length within the body'],
    ['sizes short of the body', binaryRequest(head, [Buffer.alloc(20)]), "The inputs' binary_data_size add up to 16 bytes; the body has 20"],
    ['sizes past the body', binaryRequest(head, [Buffer.alloc(12)]), 'Input "x": binary_data_size 16 goes past the end of the body (12 bytes left)'],
    [
      'size not the shape',
      binaryRequest({ inputs: [{ ...head.inputs[0], shape: [5] }] }, [Buffer.alloc(16)]),
      'Input "x": shape [5] holds 5 values, its binary data has 4',
    ],
    ['unknown datatype', binaryRequest({ inputs: [{ ...head.inputs[0], datatype: 'FLOAT32' }] }, [Buffer.alloc(16)]), 'Input "x": "datatype" must be one of'],
  ];
  for (const [what, init, message] of cases) {
    const res = await fetch(url, init);
    t.equal(res.status, 400, what);
    t.match(await errorBody(res), { code: 400, type: 'BadRequestException', message }, what);
  }
  const whole = { inputs: [{ name: 'x', shape: SHAPE, datatype: 'FP32', parameters: { binary_data_size: COUNT * 4 } }] };
  const answered = await fetch(url, binaryRequest(whole, [bytesOf(tensor(4))]));
  t.equal(answered.status, 200, 'a well-formed one is answered');
  // Read to its end: an answer left unread holds its connection busy, and the server's close waits drain_timeout for it.
  await answered.arrayBuffer();
});

function oip(t: Test, s: TestServer): (request: object) => Promise<UnaryAnswer> {
  const client = grpcClient(t, s.urls.grpcInference, 'open_inference_grpc.proto', 'org.pytorch.serve.grpc.openinference.GRPCInferenceService');
  return (request) => unaryCall(client, 'ModelInfer', request);
}

t.test('gRPC: raw_input_contents answer what fp32_contents answer, as raw_output_contents', async (t) => {
  const infer = oip(t, await server());
  const values = tensor(3);
  const typed = await infer({
    model_name: 'tensors',
    inputs: [{ name: 'x', datatype: 'FP32', shape: SHAPE, contents: { fp32_contents: Array.from(values) } }],
  });
  t.equal(typed.code, grpc.status.OK);
  const outputs = typed.value?.outputs as Array<{ contents: { fp32_contents: number[] } }>;
  sameLarge(t, Float32Array.from(outputs[0]!.contents.fp32_contents), times4(values), 'typed contents in, typed contents out');

  const raw = await infer({ model_name: 'tensors', inputs: [{ name: 'x', datatype: 'FP32', shape: SHAPE }], raw_input_contents: [bytesOf(values)] });
  t.equal(raw.code, grpc.status.OK);
  t.match(raw.value, { outputs: [{ name: 'x', datatype: 'FP32', shape: [COUNT], contents: null }] });
  sameLarge(t, floatsOf((raw.value!.raw_output_contents as Buffer[])[0]!), times4(values), 'raw in, raw out: the same values');

  const short = await infer({
    model_name: 'tensors',
    inputs: [{ name: 'x', datatype: 'FP32', shape: SHAPE }],
    raw_input_contents: [bytesOf(values).subarray(4)],
  });
  t.same(short, {
    code: grpc.status.INVALID_ARGUMENT,
    details: `Input "x": shape [1, 3, 224, 224] holds ${COUNT} values, raw_input_contents has ${COUNT - 1}`,
  });
});

// Hostile requests in the binary tensor data extension's form, over REST and gRPC, against a model
// behind the kservev2 envelope: lengths that lie, sizes past any body, shapes whose product does
// not fit a number, unknown datatypes, random header lengths over random bytes. Each is its own
// 400 (or the body limit's 413) in the error table's shape, none reaches or breaks a worker, and
// the server answers a good request after them all.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { grpcClient, unaryCall } from '../grpc-client.js';
import { buildMar, FIXTURES, seededRandom, startTestServer } from '../helpers.js';
import { frontEndMemory } from './memory.js';
import { survived } from './survival.js';

const LIMIT = 1024 * 1024;

function binaryRequest(header: unknown, tail: Buffer, headerLength?: string): RequestInit {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  return {
    method: 'POST',
    body: Buffer.concat([json, tail]),
    headers: { 'inference-header-content-length': headerLength ?? String(json.length), 'content-type': 'application/octet-stream' },
  };
}

/** A server with the tensors model (colour_segmenter: x * 4) behind the kservev2 envelope, the Open Inference Protocol on. */
function serveTensors(t: Test, properties: Record<string, string>): ReturnType<typeof startTestServer> {
  return startTestServer(t, {
    prepare: (store) =>
      buildMar(store, {
        modelName: 'tensors',
        version: '1.0',
        handler: join(FIXTURES, 'tensor_handler.ts'),
        serializedFile: join(FIXTURES, 'colour_segmenter.onnx'),
      }),
    properties: { load_models: 'tensors.mar', service_envelope: 'kservev2', ts_open_inference_protocol: 'true', ...properties },
  });
}

const input = (extra: Record<string, unknown>) => ({ inputs: [{ name: 'x', shape: [1, 3, 2, 2], datatype: 'FP32', ...extra }] });

t.test('malformed binary tensors are refused one by one; the server and its worker serve on', async (t) => {
  const server = await serveTensors(t, { max_request_size: String(LIMIT) });
  const url = `${server.urls.inference}/v2/models/tensors/infer`;
  const size = (n: unknown) => ({ parameters: { binary_data_size: n } });
  const cases: Array<[string, RequestInit, number]> = [
    ['a header length of 2^60', binaryRequest(input(size(48)), Buffer.alloc(48), String(2 ** 60)), 400],
    ['an empty header length', binaryRequest(input(size(48)), Buffer.alloc(48), ''), 400],
    ['a header length inside the JSON', binaryRequest(input(size(48)), Buffer.alloc(48), '5'), 400],
    ['a header that is a JSON array', binaryRequest('[1, 2, 3]', Buffer.alloc(0)), 400],
    ['binary_data_size of 2^53', binaryRequest(input(size(2 ** 53)), Buffer.alloc(48)), 400],
    ['binary_data_size -1', binaryRequest(input(size(-1)), Buffer.alloc(48)), 400],
    ['binary_data_size 1e400 (Infinity)', binaryRequest(JSON.stringify(input(size(48))).replace('48', '1e400'), Buffer.alloc(48)), 400],
    [
      'a shape whose product is past 2^53',
      binaryRequest({ inputs: [{ name: 'x', shape: [2 ** 31, 2 ** 31, 2 ** 31], datatype: 'FP32', ...size(48) }] }, Buffer.alloc(48)),
      400,
    ],
    ['a shape of strings', binaryRequest({ inputs: [{ name: 'x', shape: ['1'], datatype: 'FP32', ...size(4) }] }, Buffer.alloc(4)), 400],
    ['no name', binaryRequest({ inputs: [{ shape: [1], datatype: 'FP32', ...size(4) }] }, Buffer.alloc(4)), 400],
    ['an unknown datatype', binaryRequest({ inputs: [{ name: 'x', shape: [1], datatype: 'FP128', ...size(4) }] }, Buffer.alloc(4)), 400],
    [
      'BYTES with a length past the end',
      binaryRequest({ inputs: [{ name: 's', shape: [1], datatype: 'BYTES', ...size(8) }] }, Buffer.from([255, 255, 255, 255, 0, 0, 0, 0])),
      400,
    ],
    ['BYTES with more elements than the shape', binaryRequest({ inputs: [{ name: 's', shape: [1], datatype: 'BYTES', ...size(8) }] }, Buffer.alloc(8)), 400],
    ['a body past max_request_size', binaryRequest(input(size(LIMIT)), Buffer.alloc(LIMIT)), 413],
    // Legal JSON that JSON.stringify cannot write again (it recursed into a stack overflow: a 500).
    [
      'a header nested 5000 deep',
      binaryRequest(`{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["hi"]}],"x":${'['.repeat(5000)}${']'.repeat(5000)}}`, Buffer.alloc(0)),
      400,
    ],
  ];
  // Random header lengths over random bytes: never anything but a 400.
  const random = seededRandom(34);
  for (let i = 0; i < 20; i++) {
    const bytes = Buffer.from(Array.from({ length: 64 + Math.floor(random() * 64) }, () => Math.floor(random() * 256)));
    cases.push([`random bytes ${i}`, binaryRequest('', bytes, String(Math.floor(random() * bytes.length))), 400]);
  }
  let answered = 0;
  for (const [what, init, status] of cases) {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
    answered++;
    const body = (await res.json()) as { code?: number; type?: string; message?: string };
    t.equal(res.status, status, what);
    t.match(body, { code: status, type: String, message: String }, `${what}: ${body.message}`);
  }

  const client = grpcClient(t, server.urls.grpcInference, 'open_inference_grpc.proto', 'org.pytorch.serve.grpc.openinference.GRPCInferenceService');
  const raw = (shape: number[], datatype: string, bytes: Buffer) =>
    unaryCall(client, 'ModelInfer', { model_name: 'tensors', inputs: [{ name: 'x', datatype, shape }], raw_input_contents: [bytes] });
  for (const [what, shape, datatype, bytes] of [
    ['too few bytes', [1, 3, 2, 2], 'FP32', Buffer.alloc(47)],
    ['a product past 2^53', [2 ** 31, 2 ** 31, 2 ** 31], 'FP32', Buffer.alloc(48)],
    ['an unknown datatype', [12], 'FP128', Buffer.alloc(48)],
  ] as Array<[string, number[], string, Buffer]>) {
    const answer = await raw(shape, datatype, bytes);
    answered++;
    t.equal(answer.code, grpc.status.INVALID_ARGUMENT, `gRPC: ${what} (${answer.details})`);
  }
  {
    // One entry more than the inputs: it was dropped without a word.
    const answer = await unaryCall(client, 'ModelInfer', {
      model_name: 'tensors',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, 2, 2] }],
      raw_input_contents: [Buffer.alloc(48), Buffer.alloc(7)],
    });
    answered++;
    t.equal(answer.code, grpc.status.INVALID_ARGUMENT, `gRPC: a raw_input_contents entry with no input (${answer.details})`);
  }

  // colour_segmenter takes [N, 3, 224, 224] and answers each value times four.
  const shape = [1, 3, 224, 224];
  const good = Buffer.from(Float32Array.from({ length: 3 * 224 * 224 }, (_, i) => i % 7).buffer);
  const res = await fetch(url, binaryRequest({ inputs: [{ name: 'x', shape, datatype: 'FP32', ...size(good.length) }] }, good));
  t.equal(res.status, 200, 'a good binary request is answered after them');
  const rawGood = await raw(shape, 'FP32', good);
  const out = new Float32Array(Uint8Array.from((rawGood.value?.raw_output_contents as Buffer[] | undefined)?.[0] ?? []).buffer);
  t.equal(out[13], (13 % 7) * 4, 'and over gRPC');
  await survived(t, server, { models: ['tensors'], sent: cases.length + 4, answered });
});

t.test('binary BYTES of a million and a half empty elements: no more front-end memory than the same tensor costs as JSON', async (t) => {
  // The default max_request_size.
  const server = await serveTensors(t, {});
  // Under the default max_request_size (6553500 bytes): each element is its 4-byte length, 0.
  const elements = Math.floor((6_553_500 - 200) / 4);
  const raw = Buffer.alloc(4 * elements);
  const header = { inputs: [{ name: 't', shape: [elements], datatype: 'BYTES', parameters: { binary_data_size: raw.length } }] };
  const client = grpcClient(t, server.urls.grpcInference, 'open_inference_grpc.proto', 'org.pytorch.serve.grpc.openinference.GRPCInferenceService');
  const memory = frontEndMemory();
  let answered = 0;
  for (let i = 0; i < 4; i++) {
    // The handler refuses text (a 4xx or 5xx of its own): the front end's part is what is measured.
    const res = await fetch(`${server.urls.inference}/v2/models/tensors/infer`, { ...binaryRequest(header, raw), signal: AbortSignal.timeout(60_000) });
    answered++;
    t.ok(res.status >= 200, `REST ${i + 1}: answered ${res.status} ${await res.text()}`);
  }
  for (let i = 0; i < 2; i++) {
    const answer = await unaryCall(client, 'ModelInfer', {
      model_name: 'tensors',
      inputs: [{ name: 't', datatype: 'BYTES', shape: [elements] }],
      raw_input_contents: [raw],
    });
    answered++;
    t.ok(answer.code !== undefined || answer.value !== undefined, `gRPC ${i + 1}: answered`);
  }
  memory.check(t);
  await survived(t, server, { models: ['tensors'], sent: 6, answered });
});

// The binary tensor data extension's request, split and checked in process: Triton's and KServe's
// layouts, BYTES, JSON and binary inputs mixed, and every way the parts can fail to fit as a 400.
import t from 'tap';
import type { WireParam } from '../protocol/messages.js';
import { splitBinaryBody, tensorParams } from './binary-tensors.js';

const LIMIT = 6_553_500;

/** A body as the extension lays it out: the JSON header, then the tensors' bytes; and the header's length. */
function binaryBody(header: object, ...tensors: Buffer[]): { body: Buffer; length: string } {
  const json = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([json, ...tensors]), length: String(json.length) };
}

function floats(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  for (const [i, v] of values.entries()) b.writeFloatLE(v, i * 4);
  return b;
}

/** BYTES in binary form: each element's 4-byte little-endian length, then the element. */
function bytesTensor(elements: string[]): Buffer {
  return Buffer.concat(elements.flatMap((e) => [Buffer.from(Uint32Array.of(Buffer.byteLength(e)).buffer), Buffer.from(e)]));
}

function headerOf(params: WireParam[]): { inputs: Array<Record<string, unknown>>; [key: string]: unknown } {
  t.equal(params[0]!.name, 'body');
  t.equal(params[0]!.contentType, 'application/json');
  return JSON.parse(Buffer.from(params[0]!.value).toString('utf8'));
}

function paramsOf(header: object, binary: boolean, ...tensors: Buffer[]): WireParam[] {
  const { body, length } = binaryBody(header, ...tensors);
  return tensorParams(splitBinaryBody(body, length), binary, LIMIT);
}

t.test("Triton's example: UINT32 and BOOL inputs in binary form, outputs asked binary", async (t) => {
  // docs/protocol/extension_binary_data.md: a [2,2] UINT32 tensor (16 bytes) and a [3] BOOL (3 bytes).
  const uints = Buffer.from(Uint32Array.of(1, 2, 3, 4).buffer);
  const header = {
    inputs: [
      { name: 'input0', shape: [2, 2], datatype: 'UINT32', parameters: { binary_data_size: 16 } },
      { name: 'input1', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } },
    ],
    outputs: [{ name: 'output0', parameters: { binary_data: true } }, { name: 'output1' }],
  };
  const params = paramsOf(header, true, uints, Buffer.from([1, 0, 1]));
  t.same(headerOf(params), header, 'the header goes on as it came');
  t.same(
    params.slice(1).map((p) => [p.name, p.contentType, [...p.value]]),
    [
      ['binary_data_0', undefined, [...uints]],
      ['binary_data_1', undefined, [1, 0, 1]],
    ],
    "each input's bytes a parameter of their own",
  );
});

t.test("KServe's InferRequest.to_rest: a compact header, the raw bytes after it, a request parameter kept", async (t) => {
  const data = floats([0.5, -1.25, 3]);
  const header = {
    id: 'kserve-1',
    model_name: 'm',
    inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', parameters: { binary_data_size: data.length } }],
    parameters: { binary_data_output: true },
  };
  const { body, length } = binaryBody(header, data);
  const params = tensorParams(splitBinaryBody(body, length), true, LIMIT);
  t.same(headerOf(params), header);
  t.same(Buffer.from(params[1]!.value), data);
  t.equal(params[1]!.value.buffer, body.buffer, "the tensor's parameter views the body's bytes: no copy");
});

t.test('JSON and binary inputs mixed; BYTES in binary form become base64 data, as gRPC bytes_contents do', async (t) => {
  const header = {
    inputs: [
      { name: 'json', shape: [2], datatype: 'INT32', data: [7, 8] },
      { name: 'text', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: 13, other: 'kept' } },
      { name: 'bin', shape: [2], datatype: 'FP32', parameters: { binary_data_size: 8 } },
    ],
  };
  const params = paramsOf(header, true, bytesTensor(['hello', '']), floats([1, 2]));
  t.same(headerOf(params).inputs, [
    { name: 'json', shape: [2], datatype: 'INT32', data: [7, 8] },
    { name: 'text', shape: [2], datatype: 'BYTES', parameters: { other: 'kept' }, data: ['aGVsbG8=', ''] },
    { name: 'bin', shape: [2], datatype: 'FP32', parameters: { binary_data_size: 8 } },
  ]);
  t.same(
    params.slice(1).map((p) => p.name),
    ['binary_data_2'],
    'the parameter is named after its input',
  );
});

t.test('a handler that reads v2 JSON gets the values as data', async (t) => {
  const header = { inputs: [{ name: 'x', shape: [3], datatype: 'FP32', parameters: { binary_data_size: 12 } }] };
  const params = paramsOf(header, false, floats([0.5, Number.NaN, 2]));
  t.equal(params.length, 1);
  t.same(headerOf(params).inputs, [{ name: 'x', shape: [3], datatype: 'FP32', data: [0.5, null, 2] }]);
});

t.test('each way the parts fail to fit is a 400 that says which', async (t) => {
  const fp32 = (size: number, shape = [2]) => ({ inputs: [{ name: 'x', shape, datatype: 'FP32', parameters: { binary_data_size: size } }] });
  const cases: Array<[string, Buffer, string, string]> = [
    [
      'a header length past the body',
      binaryBody(fp32(8), floats([1, 2])).body,
      '999',
      'Inference-Header-Content-Length "999" is not a length within the body\'s',
    ],
    ['a header length that is no number', binaryBody(fp32(8), floats([1, 2])).body, '-3', 'Inference-Header-Content-Length "-3" is not a length'],
    [
      'a header that is not JSON',
      Buffer.from('{"inputs": [xx'),
      '14',
      'The body\'s first 14 bytes (Inference-Header-Content-Length) are not a JSON object {"inputs": [...]}',
    ],
    ['sizes past the body', ...binaryArgs(fp32(12), floats([1, 2])), 'Input "x": binary_data_size 12 goes past the end of the body (8 bytes left)'],
    ['sizes short of the body', ...binaryArgs(fp32(4), floats([1, 2])), "The inputs' binary_data_size add up to 4 bytes; the body has 8 after its"],
    ['bytes that are not the shape', ...binaryArgs(fp32(8, [3]), floats([1, 2])), 'Input "x": shape [3] holds 3 values, its binary data has 2'],
    ['bytes that are not whole values', ...binaryArgs(fp32(7), Buffer.alloc(7)), 'Input "x": 7 raw bytes are not whole FP32 values'],
    [
      'an unknown datatype',
      ...binaryArgs({ inputs: [{ name: 'x', shape: [1], datatype: 'FLOAT', parameters: { binary_data_size: 4 } }] }, floats([1])),
      'Input "x": "datatype" must be one of BOOL,',
    ],
    ['a negative dimension', ...binaryArgs(fp32(8, [-1]), floats([1, 2])), 'Input "x": shape [-1] has an unknown dimension'],
    [
      'a size that is no integer',
      ...binaryArgs({ inputs: [{ name: 'x', shape: [1], datatype: 'FP32', parameters: { binary_data_size: '4' } }] }, floats([1])),
      'Input "x": binary_data_size must be a non-negative integer',
    ],
    [
      'data beside the bytes',
      ...binaryArgs({ inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1], parameters: { binary_data_size: 4 } }] }, floats([1])),
      'Input "x": has both "data" and binary_data_size',
    ],
    [
      'BYTES cut inside an element',
      ...binaryArgs({ inputs: [{ name: 's', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: 6 } }] }, bytesTensor(['hello']).subarray(0, 6)),
      'Input "s": raw BYTES end inside an element',
    ],
  ];
  for (const [what, body, length, message] of cases) {
    let thrown: unknown;
    try {
      tensorParams(splitBinaryBody(body, length), true, LIMIT);
    } catch (err) {
      thrown = err;
    }
    t.match(thrown, { code: 'TSS_ERR_HTTP_BAD_REQUEST', status: 400 }, what);
    t.match((thrown as Error | undefined)?.message, message, what);
  }
});

t.test('written as JSON for a handler that reads it, the values may not pass max_request_size', async (t) => {
  const bools = Buffer.alloc(1000, 1);
  const { body, length } = binaryBody({ inputs: [{ name: 'b', shape: [1000], datatype: 'BOOL', parameters: { binary_data_size: 1000 } }] }, bools);
  t.throws(() => tensorParams(splitBinaryBody(body, length), false, 4000), { code: 'TSS_ERR_HTTP_BODY_TOO_LARGE', status: 413 });
  t.equal(tensorParams(splitBinaryBody(body, length), true, 4000).length, 2, 'as bytes they are what came');
});

function binaryArgs(header: object, ...tensors: Buffer[]): [Buffer, string] {
  const { body, length } = binaryBody(header, ...tensors);
  return [body, length];
}

t.test('no more inputs in binary form than a form has fields', async (t) => {
  const inputs = Array.from({ length: 1001 }, (_, i) => ({ name: `x${i}`, shape: [0], datatype: 'FP32', parameters: { binary_data_size: 0 } }));
  const { body, length } = binaryBody({ inputs });
  t.throws(() => splitBinaryBody(body, length), { code: 'TSS_ERR_HTTP_TOO_MANY_PARTS', status: 413 });
  t.equal(splitBinaryBody(...binaryArgs({ inputs: inputs.slice(1) })).raws.size, 1000, '1000 are taken');
});

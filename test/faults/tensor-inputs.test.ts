// Tensors a client shapes badly or sends in a less common form, against a real server of a
// BaseHandler model (examples/mnist's ONNX file with the built-in base_handler): a list nested
// 20,000 deep overflowed the worker's stack while it was flattened, a 503 "Prediction failed" for
// the client's own mistake, and an FP16 tensor in binary form was always refused (its bytes
// compared with the floats they become). Review-8 F2 and F3; a tensor of no values whose other
// axes declared a billion rows (review-9 F1).
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, MNIST_DIR, startTestServer, type TestServer } from '../helpers.js';
import { survived } from './survival.js';

const PIXELS = 784;

function serveDigits(t: Test, properties: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'digits', version: '1.0', handler: 'base_handler', serializedFile: join(MNIST_DIR, 'mnist.onnx') }),
    properties: { load_models: 'digits.mar', ...properties },
  });
}

const deeply = (depth: number, inner: string): string => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;

t.test('a list nested 20,000 deep is the client 400, the server serves on', async (t) => {
  const server = await serveDigits(t);
  const url = `${server.urls.inference}/predictions/digits`;
  const json = { 'content-type': 'application/json' };
  const deep = await fetch(url, { method: 'POST', headers: json, body: deeply(20_000, '0.5') });
  t.equal(deep.status, 400, 'a body nested 20,000 deep: 400');
  t.match(await deep.json(), { code: 400, message: 'Expected a JSON array of numbers' });
  const digit = await fetch(url, { method: 'POST', headers: json, body: JSON.stringify([Array.from({ length: PIXELS }, () => 0)]) });
  t.equal(digit.status, 200, 'a tensor of the right size still answers');
  await survived(t, server, { models: ['digits'], sent: 2, answered: 2 });
});

t.test('KServe v2: data nested past a tensor is 400, and FP16 in binary form answers as FP16 in JSON does', async (t) => {
  const server = await serveDigits(t, { service_envelope: 'kservev2' });
  const url = `${server.urls.inference}/v2/models/digits/infer`;
  const input = (rest: object) => ({ inputs: [{ name: 'input', shape: [1, 1, 28, 28], ...rest }] });
  const deepBody = `{"inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":${deeply(20_000, '0.5')}}]}`;
  const deep = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: deepBody });
  t.equal(deep.status, 400, 'data nested 20,000 deep: 400');
  t.match(await deep.json(), { code: 400, message: 'Input "input": "data" is nested more than 32 lists deep' });
  // No values, a billion rows declared: built as a billion empty lists, or allocated by onnxruntime (review-9 F1).
  const empty = JSON.stringify({ inputs: [{ name: 'input', shape: [1, 3, 1_000_000_000, 0], datatype: 'FP32', data: [] }] });
  const none = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: empty });
  t.equal(none.status, 400, 'a tensor of no values with a billion rows declared: 400');
  t.match(await none.json(), { message: 'Input "input": shape [1, 3, 1000000000, 0] holds no values' });

  // 0.25 + i/1024 for pixel i: exact in half precision (these halves' fractions are short).
  const values = Array.from({ length: PIXELS }, (_, i) => 0.25 + (i % 256) / 1024);
  const jsonFp16 = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(input({ datatype: 'FP16', data: values })),
  });
  t.equal(jsonFp16.status, 200, 'FP16 as JSON numbers');
  const expected = (await jsonFp16.json()) as { outputs: unknown[] };
  const header = Buffer.from(JSON.stringify(input({ datatype: 'FP16', parameters: { binary_data_size: PIXELS * 2 } })));
  const halves = Buffer.alloc(PIXELS * 2);
  for (const [i, v] of values.entries()) halves.writeUInt16LE(halfOf(v), i * 2);
  const binaryFp16 = await fetch(url, {
    method: 'POST',
    headers: { 'inference-header-content-length': String(header.length), 'content-type': 'application/octet-stream' },
    body: Buffer.concat([header, halves]),
  });
  t.equal(binaryFp16.status, 200, `FP16 in binary form (${PIXELS * 2} bytes): 200`);
  t.same(((await binaryFp16.json()) as { outputs: unknown[] }).outputs, expected.outputs, 'the same answer as the JSON form');
  await survived(t, server, { models: ['digits'], sent: 4, answered: 4 });
});

/** A number of [0.25, 0.5) with a 10-bit fraction as an IEEE half: exponent -2, no rounding. */
function halfOf(value: number): number {
  const exponent = Math.floor(Math.log2(value));
  const fraction = Math.round((value / 2 ** exponent - 1) * 1024);
  return ((exponent + 15) << 10) | fraction;
}

// The kservev2 envelope with tensors in binary form, in process through runBatch: an input's bytes
// become a typed array of its values (a view where the bytes are aligned, a copy where not), and
// outputs asked in binary form are answered in the extension's layout, each datatype's bytes.
import t from 'tap';
import type { WireParam, WireRequest, WireResponse } from '../protocol/messages.js';
import { withEnvelope } from './envelope.js';
import type { EntryPoint } from './load.js';
import { runBatch } from './run.js';
import type { HandlerOutput, RequestInput } from './types.js';
import { UnreadRequests } from './unread.js';

const FACTS = {
  modelName: 'm',
  manifest: { runtime: 'node', model: { modelName: 'm', modelVersion: '1.0' } },
  systemProperties: { model_dir: '.', gpu_id: null, batch_size: 1, server_name: 'tsserve', server_version: 'test', limit_max_image_pixels: true },
  modelYamlConfig: {},
  sequenceIdHeader: 'ts_request_sequence_id',
};

/** Runs one request through the kservev2 envelope around `answer`; the rows it saw and the wire answer. */
async function run(params: WireParam[], answer: (row: RequestInput) => HandlerOutput) {
  const rows: RequestInput[] = [];
  const entry: EntryPoint = {
    initialize: async () => undefined,
    handle: async (batch) => {
      rows.push(...batch);
      return batch.map(answer);
    },
  };
  const request: WireRequest = { id: 'r1', headers: {}, params };
  const item = await runBatch(withEnvelope(entry, 'kservev2'), FACTS, [request], true, () => undefined).then(
    ({ items }) => items[0]!,
    (err: unknown) => refusal(request.id, err),
  );
  return { rows, item };
}

/** A request the envelope refused (UnreadRequests, the batch's error) as its client is answered: the error's status and JSON. */
function refusal(id: string, err: unknown): WireResponse {
  if (!(err instanceof UnreadRequests)) throw err;
  const body = Buffer.from(JSON.stringify({ code: err.status, type: 'BadRequestException', message: err.message }));
  return { id, status: err.status, phrase: '', headers: {}, body };
}

const header = (value: object): WireParam => ({ name: 'body', contentType: 'application/json', value: Buffer.from(JSON.stringify(value)) });

/** `bytes` at `offset` inside a larger buffer, as an IPC message may place them. */
function placed(bytes: Buffer, offset: number): Buffer {
  const holder = Buffer.alloc(bytes.length + offset + 8);
  bytes.copy(holder, offset);
  return holder.subarray(offset, offset + bytes.length);
}

/** An answer in binary form: its JSON header and the bytes after it. */
function split(body: Uint8Array, length: string | undefined): { head: { outputs: Array<Record<string, unknown>> }; rest: Buffer } {
  const b = Buffer.from(body);
  const n = Number(length);
  return { head: JSON.parse(b.subarray(0, n).toString('utf8')), rest: b.subarray(n) };
}

t.test('an input in binary form is a typed array of its values: viewed when aligned, copied when not', async (t) => {
  const floats = Buffer.from(Float32Array.of(1.5, -2, 3, 4).buffer);
  for (const offset of [8, 3]) {
    const bytes = placed(floats, offset);
    const { rows } = await run(
      [
        header({
          inputs: [
            { name: 'x', shape: [2, 2], datatype: 'FP32', parameters: { binary_data_size: 16 } },
            { name: 'y', shape: [3], datatype: 'INT32', data: [7, 8, 9] },
          ],
        }),
        { name: 'binary_data_0', contentType: undefined, value: bytes },
      ],
      () => 0,
    );
    const x = rows[0]!.data as Float32Array;
    t.ok(x instanceof Float32Array, `offset ${offset}: a Float32Array`);
    t.same([...x], [1.5, -2, 3, 4]);
    t.same(rows[0]!.shape, [2, 2], 'beside its shape');
    t.equal(x.buffer === bytes.buffer, offset % 4 === 0, offset % 4 === 0 ? 'a view of the bytes' : 'a copy: the bytes were misaligned');
    t.same(rows[1], { name: 'y', shape: [3], datatype: 'INT32', data: [7, 8, 9] }, 'a JSON input beside it, as before');
  }
});

t.test('outputs asked in binary form: each datatype in its bytes, the rest as JSON', async (t) => {
  const answers: Record<string, HandlerOutput> = {
    f: Float32Array.of(0.25, 8),
    i: [1, -2],
    d: [0.5],
    b: [true, false, true],
    s: ['hé', new Map([['k', 1]])],
    j: [3, 4],
  };
  const names = Object.keys(answers);
  const { item } = await run(
    [
      header({
        inputs: names.map((name) => ({ name, shape: [1], datatype: 'INT32', data: [0] })),
        outputs: [{ name: 'j', parameters: { binary_data: false } }],
        parameters: { binary_data_output: true },
      }),
    ],
    (row) => answers[row.name as string]!,
  );
  t.equal(item.headers['content-type'], 'application/octet-stream');
  const { head, rest } = split(item.body, item.headers['inference-header-content-length']);
  t.same(
    head.outputs.map((o) => [o.name, o.datatype, o.shape, (o.parameters as { binary_data_size?: number } | undefined)?.binary_data_size ?? o.data]),
    [
      ['f', 'FP32', [2], 8],
      ['i', 'INT64', [2], 16],
      ['d', 'FP64', [1], 8],
      ['b', 'BOOL', [3], 3],
      ['s', 'BYTES', [2], 4 + 3 + 4 + 12],
      ['j', 'INT64', [2], [3, 4]],
    ],
    'binary_data: false keeps one output JSON',
  );
  t.same([...new Float32Array(Uint8Array.from(rest.subarray(0, 8)).buffer)], [0.25, 8]);
  t.same([rest.readBigInt64LE(8), rest.readBigInt64LE(16)], [1n, -2n]);
  t.equal(rest.readDoubleLE(24), 0.5);
  t.same([...rest.subarray(32, 35)], [1, 0, 1]);
  const strings = rest.subarray(35);
  t.equal(strings.readUInt32LE(0), 3);
  t.equal(strings.subarray(4, 7).toString('utf8'), 'hé');
  t.equal(strings.readUInt32LE(7), 12, 'the Map as JSON text, indented as any answer');
  t.same(JSON.parse(strings.subarray(11).toString('utf8')), { k: 1 }, 'a Map as its JSON text');
});

t.test('without binary outputs asked the answer is JSON, a typed array an FP32 tensor of numbers', async (t) => {
  const { item } = await run([header({ inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }] })], () => Float32Array.of(0.5, 2));
  t.equal(item.headers['content-type'], 'application/json');
  t.match(JSON.parse(Buffer.from(item.body).toString('utf8')), { outputs: [{ name: 'x', datatype: 'FP32', data: [0.5, 2], shape: [2] }] });
});

t.test('binary_data_size without its bytes is the request 400', async (t) => {
  const { item } = await run([header({ inputs: [{ name: 'x', shape: [1], datatype: 'FP32', parameters: { binary_data_size: 4 } }] })], () => 0);
  t.equal(item.status, 400);
  t.match(Buffer.from(item.body).toString('utf8'), 'binary_data_size without its bytes');
});

t.test('bytes that are not whole values of the datatype are the request 400 (a form field the front end never checked)', async (t) => {
  const input = { inputs: [{ name: 'x', shape: [1], datatype: 'FP16', parameters: { binary_data_size: 3 } }] };
  const { item } = await run([header(input), { name: 'binary_data_0', contentType: undefined, value: Buffer.from([0, 60, 7]) }], () => 0);
  t.equal(item.status, 400);
  t.match(Buffer.from(item.body).toString('utf8'), 'its binary data has 3 bytes');
});

t.test('FP16 in binary form: two bytes a value, read as floats (review-8 F3: refused, its floats counted four bytes each)', async (t) => {
  const halves = Buffer.from(Uint16Array.of(0x3c00, 0xc000, 0x3800).buffer);
  const input = { inputs: [{ name: 'x', shape: [3], datatype: 'FP16', parameters: { binary_data_size: 6 } }] };
  const { rows, item } = await run([header(input), { name: 'binary_data_0', contentType: undefined, value: halves }], () => 0);
  t.equal(item.status, 200, Buffer.from(item.body).toString('utf8'));
  t.same([...(rows[0]!.data as Float32Array)], [1, -2, 0.5], 'the halves as floats');
});

t.test('data nested deeper than a tensor can be is the request 400, not a stack overflow (review-8 F2)', async (t) => {
  const deep = `${'['.repeat(20_000)}0.5${']'.repeat(20_000)}`;
  const body = `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":${deep}}]}`;
  const { rows, item } = await run([{ name: 'body', contentType: 'application/json', value: Buffer.from(body) }], () => 0);
  t.equal(item.status, 400);
  t.match(JSON.parse(Buffer.from(item.body).toString('utf8')), { code: 400, message: 'Input "x": "data" is nested more than 32 lists deep' });
  t.same(rows, [], 'the handler never saw it');
});

t.test('a v2 tensor of no values is the request 400: its other axes would be built unbounded (review-9 F1)', async (t) => {
  for (const input of [
    { name: 'x', shape: [1, 3, 1_000_000_000, 0], datatype: 'FP32', data: [] },
    { name: 'x', shape: [1, 3, 1_000_000_000, 0], datatype: 'FP16', parameters: { binary_data_size: 0 } },
  ]) {
    const params = [header({ inputs: [input] }), ...(input.parameters ? [{ name: 'binary_data_0', contentType: undefined, value: Buffer.alloc(0) }] : [])];
    const { rows, item } = await run(params, () => 0);
    t.equal(item.status, 400, input.datatype);
    t.match(JSON.parse(Buffer.from(item.body).toString('utf8')), { message: 'Input "x": shape [1, 3, 1000000000, 0] holds no values' });
    t.same(rows, [], 'the handler never saw it');
  }
});

// What BaseHandler's helpers give a handler author.
import t from 'tap';
import { join } from 'node:path';
import { ort } from '../runtime/onnx.js';
import { BaseHandler, splitBatch } from './base-handler.js';
import { BatchContext } from './context.js';

const FIXTURES = join(import.meta.dirname, '..', '..', 'test', 'fixtures');

t.test('splitBatch rows are plain arrays: a handler that returns one answers a JSON array', async (t) => {
  const rows = splitBatch(new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]));
  t.equal(JSON.stringify(rows[1]), '[4,5,6]');
  t.ok(Array.isArray(rows[0]));
  t.same(rows, [
    [1, 2, 3],
    [4, 5, 6],
  ]);
});

// A model whose input has named axes (red_detector.onnx: [1, 3, height, width]) was fed every
// JSON tensor flattened to [rows, numbers], a rank onnxruntime refused (503): it takes the
// client's own shape now, checked against the input's rank and known sizes.
const FACTS = {
  modelName: 'red',
  manifest: { runtime: 'node', model: { modelName: 'red', modelVersion: '1.0', serializedFile: 'red_detector.onnx' } },
  systemProperties: { model_dir: FIXTURES, gpu_id: null, batch_size: 1, server_name: 'tsserve', server_version: 'test', limit_max_image_pixels: true },
  modelYamlConfig: {},
  sequenceIdHeader: 'ts_request_sequence_id',
};

/** An 8 x 12 image, its red channel 1 in rows 2 to 5 and columns 3 to 8, as [3][8][12] nested lists. */
function redPatch(): number[][][] {
  return [0, 1, 2].map((c) =>
    Array.from({ length: 8 }, (_, y) => Array.from({ length: 12 }, (_, x) => (c === 0 && y >= 2 && y < 6 && x >= 3 && x < 9 ? 1 : 0))),
  );
}

async function redDetector(): Promise<{ handler: BaseHandler; context: BatchContext }> {
  const handler = new BaseHandler();
  const context = new BatchContext(FACTS, [{ id: 'r1', headers: {}, params: [] }]);
  await handler.initialize(context);
  return { handler, context };
}

t.test('a model input of named axes takes a tensor of its rank, nested lists or a v2 shape', async (t) => {
  const { handler, context } = await redDetector();
  const nested = (await handler.preprocess([{ data: [redPatch()] }])) as ort.Tensor;
  t.same(nested.dims, [1, 3, 8, 12], '[1][3][8][12] lists');
  t.same(((await handler.preprocess([{ data: redPatch() }])) as ort.Tensor).dims, [1, 3, 8, 12], '[3][8][12] lists, the batch axis left out');
  const flat = Float32Array.from(redPatch().flat(2));
  const v2 = (await handler.preprocess([{ name: 'input', shape: [1, 3, 8, 12], datatype: 'FP32', data: flat }])) as ort.Tensor;
  t.same(v2.dims, [1, 3, 8, 12], 'a v2 tensor sent as bytes, with its shape');
  const [boxes] = await handler.handle([{ data: [redPatch()] }], context);
  t.same(
    boxes,
    [
      [3, 2, 9, 6],
      [0, 0, 12, 8],
    ],
    "the red patch's box and the decoy's: a batch of one's whole output",
  );
});

t.test('a tensor of another rank or size is a 400 that names the input axes', async (t) => {
  const { handler } = await redDetector();
  const message = /Each input must be a tensor of \[3, height, width\] \(the model's input input being \[1, 3, height, width\]\): got \[3, 96\]/;
  await t.rejects(handler.preprocess([{ data: redPatch().map((c) => c.flat()) }]), { status: 400, message });
  await t.rejects(handler.preprocess([{ data: [redPatch().slice(0, 2)] }]), { status: 400, message: /got \[1, 2, 8, 12\]/ }, 'two channels, not three');
  const flat = Float32Array.from(redPatch().flat(2));
  await t.rejects(
    handler.preprocess([{ shape: [1, 3, 8, 13], data: flat }]),
    { status: 400, message: /got \[1, 3, 8, 13\]/ },
    'a shape its data does not fill',
  );
});

t.test('a tensor with an axis of 0 is a 400: its other axes are unbounded (review-9 F1: [1, 3, 1e9, 0] grew a worker past 18 GB)', async (t) => {
  const { handler } = await redDetector();
  for (const shape of [
    [1, 3, 1_000_000_000, 0],
    [1, 3, 0, 0],
  ]) {
    await t.rejects(
      handler.preprocess([{ shape, data: new Float32Array(0) }]),
      { status: 400, message: new RegExp(`got \\[${shape.join(', ')}\\]`) },
      `[${shape}]`,
    );
  }
  await t.rejects(handler.preprocess([{ data: [[[[]], [[]], [[]]]] }]), { status: 400, message: /got \[1, 3, 1, 0\]/ }, 'nested lists with an empty axis');
});

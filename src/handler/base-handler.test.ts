// What BaseHandler's helpers give a handler author.
import t from 'tap';
import { ort } from '../runtime/onnx.js';
import { splitBatch } from './base-handler.js';

t.test('splitBatch rows are plain arrays: a handler that returns one answers a JSON array', async (t) => {
  const rows = splitBatch(new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]));
  t.equal(JSON.stringify(rows[1]), '[4,5,6]');
  t.ok(Array.isArray(rows[0]));
  t.same(rows, [
    [1, 2, 3],
    [4, 5, 6],
  ]);
});

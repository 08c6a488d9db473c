import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { INTRA_OP_THREADS_ENV, WIDE_INTRA_OP_THREADS_ENV } from '../protocol/messages.js';
import { batchThreads, createSession, inBatch, ort } from './onnx.js';

const MODEL = fileURLToPath(new URL('../../test/fixtures/colour_classifier.onnx', import.meta.url));

/** The thread budget a front end would give the worker, for the length of test `t`. */
function threadEnv(t: Test, narrow: string, wide: string | undefined): void {
  const saved = { [INTRA_OP_THREADS_ENV]: process.env[INTRA_OP_THREADS_ENV], [WIDE_INTRA_OP_THREADS_ENV]: process.env[WIDE_INTRA_OP_THREADS_ENV] };
  const set = (values: Record<string, string | undefined>): void => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  set({ [INTRA_OP_THREADS_ENV]: narrow, [WIDE_INTRA_OP_THREADS_ENV]: wide });
  t.teardown(() => set(saved));
}

/** One image per colour, each a plain red, green or blue square. */
function colours(): ort.Tensor {
  const side = 224 * 224;
  const data = new Float32Array(3 * 3 * side);
  for (let c = 0; c < 3; c++) data.fill(1, (c * 3 + c) * side, (c * 3 + c + 1) * side);
  return new ort.Tensor('float32', data, [3, 3, 224, 224]);
}

t.test('with a wide budget a session runs either way, with the same answers and metadata', async (t) => {
  threadEnv(t, '1', '2');
  const session = await createSession(MODEL);
  t.teardown(() => session.release());
  t.same(session.inputNames, ['input']);
  t.same(session.outputNames, ['logits']);
  t.equal(session.inputMetadata[0]?.name, 'input');

  const narrow = await inBatch(false, async () => {
    t.equal(batchThreads(), 1);
    return session.run({ input: colours() });
  });
  const wide = await inBatch(true, async () => {
    t.equal(batchThreads(), 2);
    return session.run({ input: colours() }, ['logits']);
  });
  t.equal(batchThreads(), 1, "outside a batch: the worker's share");
  t.same(Array.from(wide.logits!.data as Float32Array), Array.from(narrow.logits!.data as Float32Array));
  const logits = narrow.logits!.data as Float32Array;
  for (let image = 0; image < 3; image++) {
    const row = Array.from(logits.subarray(image * 3, image * 3 + 3));
    t.equal(row.indexOf(Math.max(...row)), image, `image ${image} is its own colour`);
  }
});

t.test("without a wide budget the session is onnxruntime's own, and a lone batch keeps to the share", async (t) => {
  threadEnv(t, '1', undefined);
  t.equal(await inBatch(true, async () => batchThreads()), 1);
  const session = await createSession(MODEL);
  t.teardown(() => session.release());
  t.type(session, Object.getPrototypeOf(await ort.InferenceSession.create(MODEL)).constructor);
});

t.test('each batch sees its own thread choice, even while another is running', async (t) => {
  threadEnv(t, '1', '2');
  const later = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const seen = await Promise.all([
    inBatch(true, async () => {
      await later();
      return batchThreads();
    }),
    inBatch(false, async () => batchThreads()),
  ]);
  t.same(seen, [2, 1], 'the wide batch kept its answer after a narrow one began');
});

t.test('a handler that asks for a thread count gets one session with it', async (t) => {
  threadEnv(t, '1', '2');
  const session = await createSession(MODEL, { intraOpThreads: 1 });
  t.teardown(() => session.release());
  t.type(session, Object.getPrototypeOf(await ort.InferenceSession.create(MODEL)).constructor);
});

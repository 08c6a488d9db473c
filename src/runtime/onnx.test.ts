import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { INTRA_OP_THREADS_ENV, WIDE_INTRA_OP_THREADS_ENV } from '../protocol/messages.js';
import { optimizedModelBytes } from './model-bytes.js';
import { batchThreads, createSession, inBatch, ort, ownedBy, type SessionSet } from './onnx.js';

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

/** Today's session of `model` from its file, one thread, as a worker without adaptiveThreads opens it. */
async function fromFile(t: Test, model: string): Promise<ort.InferenceSession> {
  threadEnv(t, '1', undefined);
  const session = await createSession(model);
  t.teardown(() => session.release());
  return session;
}

/** The first input of `session` at batch 1, filled with fixed values. */
function someInput(session: ort.InferenceSession): Record<string, ort.Tensor> {
  const meta = session.inputMetadata[0];
  const shape = meta?.isTensor ? meta.shape : [];
  const dims = shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  const data = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => ((i * 7919) % 255) / 255);
  return { [session.inputNames[0]!]: new ort.Tensor('float32', data, dims) };
}

for (const [name, model] of [
  ['colour_classifier', MODEL],
  ['mnist', fileURLToPath(new URL('../../examples/mnist/mnist.onnx', import.meta.url))],
] as const) {
  t.test(`${name}: the two sessions of adaptiveThreads, reading one optimised copy of the weights, answer exactly as a session from the file`, async (t) => {
    const plain = await fromFile(t, model);
    const input = someInput(plain);
    const expected = Array.from((await plain.run(input))[plain.outputNames[0]!]!.data as Float32Array);

    threadEnv(t, '1', '2');
    const adaptive = await createSession(model);
    t.teardown(() => adaptive.release());
    for (const wide of [false, true]) {
      const out = await inBatch(wide, () => adaptive.run(input));
      t.same(Array.from(out[adaptive.outputNames[0]!]!.data as Float32Array), expected, wide ? 'the wide session' : 'the narrow one');
    }
  });
}

t.test('a model is converted once per process, and every later session of it shares the bytes', async (t) => {
  const [first, second] = await Promise.all([optimizedModelBytes(MODEL), optimizedModelBytes(MODEL)]);
  t.ok(first && first.byteLength > 0, 'converted');
  t.equal(second, first, 'the same bytes');
  t.equal(await optimizedModelBytes(MODEL), first, 'and again later');
});

t.test('a file the conversion does not take leaves the model to be opened from its file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-onnx-test-'));
  const tmp = process.env.TMPDIR;
  process.env.TMPDIR = dir; // the conversion's scratch folder goes here
  t.teardown(() => {
    if (tmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = tmp;
    rmSync(dir, { recursive: true, force: true });
  });
  const notAModel = join(dir, 'not-a-model.onnx');
  writeFileSync(notAModel, 'not a model');
  t.equal(await optimizedModelBytes(notAModel), undefined, 'no bytes for it');
  t.equal(await optimizedModelBytes(join(dir, 'absent.onnx')), undefined, 'nor for a file that is not there');
  threadEnv(t, '1', '2');
  await t.rejects(createSession(notAModel), 'opening it fails as onnxruntime says');
  t.same(readdirSync(dir), ['not-a-model.onnx'], 'no scratch folder left behind');
});

t.test('the sessions a model opens are its own: a shared host closes exactly those when it drops the model', async (t) => {
  threadEnv(t, '1', undefined);
  const mine: SessionSet = new Set();
  const theirs: SessionSet = new Set();
  const [a, b] = await Promise.all([ownedBy(mine, () => createSession(MODEL)), ownedBy(theirs, () => createSession(MODEL))]);
  const outside = await createSession(MODEL);
  t.teardown(() => outside.release());
  t.same([...mine], [a], "the first model's session, opened while the second's opened too, is the first's");
  t.same([...theirs], [b], "the second is the second's");
  await Promise.all([...mine, ...theirs].map((s) => s.release()));
  const result = await outside.run({ input: colours() });
  t.equal(result.logits?.dims[0], 3, 'a session opened outside any model is in neither, and runs after theirs were closed');
});

// /explanations and KServe's :explain: occlusion attributions from BaseHandler, checked on
// test/fixtures/colour_classifier.onnx (its logits are the image's mean colour, so which half of
// an image matters to which class is known) and on the MNIST example.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decode as decodePng } from 'fast-png';
import sharp from 'sharp';
import t, { type Test } from 'tap';
import {
  buildColoursMar,
  buildLabelledColoursMar,
  buildMar,
  buildMnistMar,
  errorBody,
  FIXTURES,
  MNIST_DIR,
  sameLarge,
  sharedServer,
  startTestServer,
  type TestServer,
} from './helpers.js';

type Chw = number[][][];

/** 256 x 256, red on the left half, blue on the right: after Resize(256) and CenterCrop(224) the halves meet at column 112. */
function redBlue(): Promise<Buffer> {
  const half = { width: 128, height: 256, channels: 3 as const };
  return sharp({ create: { width: 256, height: 256, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .composite([
      { input: { create: { ...half, background: { r: 250, g: 10, b: 10 } } }, left: 0, top: 0 },
      { input: { create: { ...half, background: { r: 10, g: 10, b: 250 } } }, left: 128, top: 0 },
    ])
    .png()
    .toBuffer();
}

function serveColours(t: Test, properties: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => buildColoursMar(store),
    properties: { load_models: 'colours.mar', ...properties },
  });
}

/**
 * One server for the file: colours.mar, and beside it the MNIST example, a text classifier
 * (sentiment), an image segmenter (segments) and colours with index_to_name.json (labelled), each
 * loaded at start-up; a test that registers a model gives it a name of its own.
 */
const colours = sharedServer((t) =>
  startTestServer(t, {
    prepare: (store) => {
      buildColoursMar(store);
      buildMnistMar(store);
      const vocab = join(store, '..', 'vocab.txt');
      writeFileSync(vocab, ['<pad>', '<unk>', 'good', 'great', 'love', 'bad', 'awful', 'hate'].join('\n') + '\n');
      buildMar(store, {
        modelName: 'sentiment',
        version: '1.0',
        handler: 'text_classifier',
        serializedFile: join(FIXTURES, 'word_sentiment.onnx'),
        extraFiles: vocab,
      });
      buildMar(store, { modelName: 'segments', version: '1.0', handler: 'image_segmenter', serializedFile: join(FIXTURES, 'colour_segmenter.onnx') });
      buildLabelledColoursMar(store, { 0: 'red', 1: 'green', 2: 'blue' });
    },
    properties: { load_models: 'colours.mar,mnist.mar,sentiment.mar,segments.mar,labelled.mar' },
  }),
);

function explain(url: string, image: Buffer, target?: string): Promise<Response> {
  const form = new FormData();
  form.append('data', new Blob([image], { type: 'image/png' }));
  if (target !== undefined) form.append('target', target);
  return fetch(url, { method: 'POST', body: form });
}

/** Mean attribution of row `y` over columns [from, to). */
function meanOf(map: Chw, channel: number, y: number, from: number, to: number): number {
  const row = map[channel]![y]!.slice(from, to);
  return row.reduce((a, b) => a + b, 0) / row.length;
}

t.test('image_classifier explains a class: the half of the image that carries its colour counts for it', async (t) => {
  const server = await colours();
  const url = `${server.urls.inference}/explanations/colours`;
  const image = await redBlue();

  const red = await explain(url, image, '0');
  t.equal(red.status, 200);
  const map = (await red.json()) as Chw;
  t.same([map.length, map[0]!.length, map[0]![0]!.length], [3, 224, 224], "TorchServe's shape: the input's C x H x W");
  t.ok(meanOf(map, 0, 100, 0, 100) > 0, 'hiding red pixels lowers the red score');
  t.ok(meanOf(map, 0, 100, 124, 224) < 0, 'hiding blue pixels raises it');
  sameLarge(t, map[1]!, map[0]!, 'a patch hides every channel at once');

  const blue = (await (await explain(url, image, '2')).json()) as Chw;
  t.ok(meanOf(blue, 0, 100, 124, 224) > 0 && meanOf(blue, 0, 100, 0, 100) < 0, 'target 2 (blue): the other way round');
  const none = (await (await explain(url, image)).json()) as Chw;
  sameLarge(t, none, map, "without a target, class 0, as TorchServe's explain_handle");

  const predicted = await fetch(`${server.urls.inference}/predictions/colours`, { method: 'POST', body: image });
  t.match(await predicted.json(), { 0: Number }, 'predictions are unchanged');
});

t.test('an explanation never shares a batch: predictions batched around it get predictions', async (t) => {
  const server = await colours();
  const reg = await fetch(
    `${server.urls.management}/models?url=colours.mar&model_name=batched&initial_workers=1&synchronous=true&batch_size=4&max_batch_delay=300`,
    { method: 'POST' },
  );
  t.equal(reg.status, 200);
  const image = await redBlue();
  const explained = explain(`${server.urls.inference}/explanations/batched`, image, '0');
  const predicted = [1, 2].map(() => fetch(`${server.urls.inference}/predictions/batched`, { method: 'POST', body: image }));
  const map = (await (await explained).json()) as Chw;
  t.equal(map.length, 3, 'the explanation');
  for (const p of await Promise.all(predicted)) t.match(await p.json(), { 0: Number }, 'a prediction, not an explanation');
});

t.test('a target that is not a class, or not a number, is a 400', async (t) => {
  const server = await colours();
  const url = `${server.urls.inference}/explanations/colours`;
  const image = await redBlue();
  const outOfRange = await explain(url, image, '7');
  t.equal(outOfRange.status, 400);
  t.match(await errorBody(outOfRange), { code: 400, message: 'Explanation target 7 is not a class of this model (0..2)' });
  const text = await explain(url, image, 'cat');
  t.equal(text.status, 400);
  t.match(await errorBody(text), { message: /^Explanation target must be a class index/ });
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, 'the server is fine');
});

t.test("KServe v1 :explain answers {explanations: [...]}, one per instance, for the instance's target", async (t) => {
  const server = await serveColours(t, { service_envelope: 'kserve' });
  const b64 = (await redBlue()).toString('base64');
  const res = await fetch(`${server.urls.inference}/v1/models/colours:explain`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ instances: [{ data: b64, target: 2 }] }),
  });
  t.equal(res.status, 200);
  const { explanations } = (await res.json()) as { explanations: Chw[] };
  t.equal(explanations.length, 1);
  t.ok(meanOf(explanations[0]!, 2, 50, 124, 224) > 0, 'blue explained by the blue half');
});

t.test('the MNIST example explains a digit: its strokes count for it, the background hardly', async (t) => {
  const server = await colours();
  const png = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  const res = await explain(`${server.urls.inference}/explanations/mnist`, png, '7');
  t.equal(res.status, 200);
  const [map] = (await res.json()) as Chw;
  t.same([map!.length, map![0]!.length], [28, 28], '1 x 28 x 28');
  const pixels = decodePng(png);
  let stroke = 0;
  let strokeN = 0;
  let background = 0;
  let backgroundN = 0;
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const bright = pixels.data[(y * 28 + x) * pixels.channels]! > 128;
      if (bright) {
        stroke += map![y]![x]!;
        strokeN++;
      } else {
        background += map![y]![x]!;
        backgroundN++;
      }
    }
  }
  t.ok(
    stroke / strokeN > background / backgroundN,
    `stroke ${(stroke / strokeN).toExponential(2)} > background ${(background / backgroundN).toExponential(2)}`,
  );
});

t.test("text_classifier explains each word's part in the target class, as TorchServe's {words, importances}", async (t) => {
  const server = await colours();
  const form = new FormData();
  form.append('data', 'Good film, bad ending, zzz');
  form.append('target', '1');
  const res = await fetch(`${server.urls.inference}/explanations/sentiment`, { method: 'POST', body: form });
  t.equal(res.status, 200);
  const answer = (await res.json()) as { words: string[]; importances: number[] };
  t.same(
    answer.words,
    ['good', 'film', 'bad', 'ending', 'zzz'].map((w) => (['good', 'bad'].includes(w) ? w : '<unk>')),
    'the tokens the model saw',
  );
  const [good, film, bad] = answer.importances;
  t.ok(good! > 0 && bad! < 0, `toward Positive, "good" counts for (${good}) and "bad" against (${bad})`);
  t.equal(film, 0, 'an unknown word weighs nothing');
  t.ok(Math.abs(Math.hypot(...answer.importances) - 1) < 1e-6, 'scaled to unit length');
});

t.test('a handler whose output is not class scores answers 501 with the reason', async (t) => {
  const server = await colours();
  const res = await explain(`${server.urls.inference}/explanations/segments`, await redBlue());
  t.equal(res.status, 501);
  t.match(await errorBody(res), { code: 501, message: /^This handler cannot explain its output/ });
  t.equal((await fetch(`${server.urls.inference}/predictions/segments`, { method: 'POST', body: await redBlue() })).status, 200, 'it still predicts');
});

t.test("a model with index_to_name.json also takes the class's label as the target: what its predictions answer", async (t) => {
  const server = await colours();
  const image = await redBlue();
  const top = Object.keys(
    (await (await fetch(`${server.urls.inference}/predictions/labelled`, { method: 'POST', body: image })).json()) as Record<string, number>,
  )[0]!;
  t.ok(['red', 'blue'].includes(top), `the top class is a label: ${top}`);
  const url = `${server.urls.inference}/explanations/labelled`;
  const byLabel = await explain(url, image, 'blue');
  t.equal(byLabel.status, 200);
  sameLarge(t, (await byLabel.json()) as Chw, (await (await explain(url, image, '2')).json()) as Chw, 'target=blue is target=2');
  const unknown = await explain(url, image, 'purple');
  t.equal(unknown.status, 400);
  t.match(await errorBody(unknown), { message: 'Explanation target must be a class index or label, got "purple"' });
});

// image_segmenter, object_detector and text_classifier on purpose-built models whose answers are
// known (test/fixtures/make_fixture_models.py), good and bad inputs, over real HTTP.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { buildMar, errorBody, FIXTURES, serveFixtureModel, startTestServer, tempDir } from './helpers.js';

/** A width x height picture, blue, with a red rectangle at (left, top) of w x h. */
function redOnBlue(width: number, height: number, rect: { left: number; top: number; w: number; h: number }): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 0, g: 0, b: 255 } } })
    .composite([{ input: { create: { width: rect.w, height: rect.h, channels: 3, background: { r: 255, g: 0, b: 0 } } }, left: rect.left, top: rect.top }])
    .png()
    .toBuffer();
}

function post(url: string, body: Buffer | string, type = 'application/octet-stream'): Promise<Response> {
  return fetch(url, { method: 'POST', body, headers: { 'content-type': type } });
}

t.test('image_segmenter: each pixel its most probable class and that probability', async (t) => {
  const server = await serveFixtureModel(t, 'seg', 'image_segmenter', 'colour_segmenter.onnx');
  // 256x256: resize keeps it, the centre crop takes 16..240; red fills the left half.
  const res = await post(`${server.urls.inference}/predictions/seg`, await redOnBlue(256, 256, { left: 0, top: 0, w: 128, h: 256 }));
  t.equal(res.status, 200);
  const map = (await res.json()) as Array<Array<[number, number]>>;
  t.equal(map.length, 224, '224 rows');
  t.equal(map[0]!.length, 224, 'of 224 pixels');
  t.equal(map[100]![10]![0], 0, 'a left pixel is red, class 0');
  t.equal(map[100]![200]![0], 2, 'a right pixel is blue, class 2');
  t.ok(map[100]![10]![1] > 0.9 && map[100]![10]![1] <= 1, `with its probability (${map[100]![10]![1]})`);

  const bad = await post(`${server.urls.inference}/predictions/seg`, Buffer.from('not an image'));
  t.equal(bad.status, 400);
  t.match(await errorBody(bad), { code: 400, message: /^Invalid image/ });
});

t.test('object_detector: boxes above the threshold, named by index_to_name.json', async (t) => {
  const labels = tempDir(t);
  writeFileSync(join(labels, 'index_to_name.json'), JSON.stringify({ 1: 'red thing', 2: 'decoy' }));
  const server = await serveFixtureModel(t, 'det', 'object_detector', 'red_detector.onnx', [join(labels, 'index_to_name.json')]);
  const url = `${server.urls.inference}/predictions/det`;
  const res = await post(url, await redOnBlue(120, 80, { left: 30, top: 20, w: 40, h: 10 }));
  t.equal(res.status, 200);
  t.same(await res.json(), [{ 'red thing': [30, 20, 70, 30], score: 0.8999999761581421 }], 'the red box in pixels of the image as sent; the 0.3 decoy dropped');

  const [a, b] = await Promise.all([
    post(url, await redOnBlue(64, 64, { left: 0, top: 0, w: 8, h: 8 })),
    post(url, await redOnBlue(200, 100, { left: 150, top: 50, w: 50, h: 50 })),
  ]);
  t.same(await a.json(), [{ 'red thing': [0, 0, 8, 8], score: 0.8999999761581421 }], 'images of different sizes, each its own answer');
  t.same(await b.json(), [{ 'red thing': [150, 50, 200, 100], score: 0.8999999761581421 }]);

  const bad = await post(url, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0]));
  t.equal(bad.status, 400, 'a truncated PNG is a 400');
});

t.test('text_classifier: words looked up in vocab.txt, every class with its probability', async (t) => {
  const files = tempDir(t);
  writeFileSync(join(files, 'vocab.txt'), ['<pad>', '<unk>', 'good', 'great', 'love', 'bad', 'awful', 'hate'].join('\n') + '\n');
  writeFileSync(join(files, 'index_to_name.json'), JSON.stringify({ 0: 'Negative', 1: 'Positive' }));
  const server = await serveFixtureModel(t, 'sentiment', 'text_classifier', 'word_sentiment.onnx', [
    join(files, 'vocab.txt'),
    join(files, 'index_to_name.json'),
  ]);
  const url = `${server.urls.inference}/predictions/sentiment`;
  const ask = async (body: string, type = 'text/plain'): Promise<Record<string, number>> =>
    (await (await post(url, body, type)).json()) as Record<string, number>;

  const positive = await ask('<b>GREAT</b> film, I loved... no: I <i>LOVE</i> it! Good.');
  t.same(Object.keys(positive), ['Negative', 'Positive'], 'every class, in class order');
  t.ok(positive.Positive! > 0.99, `HTML, case and punctuation cleaned: great + love + good (${positive.Positive})`);
  const negative = await ask('Awful. Bad, bad acting; I hate it');
  t.ok(negative.Negative! > 0.99, 'awful + bad + bad + hate');
  const unknown = await ask('zzz qqq');
  t.ok(Math.abs(unknown.Positive! - 0.5) < 1e-6, 'unknown words weigh nothing');
  t.ok((await ask('{"text": "great"}', 'application/json')).Positive! > 0.8, 'JSON {"text": ...}');

  const batch = await Promise.all(['good', 'bad awful', ''].map((b) => ask(b)));
  t.ok(batch[0]!.Positive! > 0.5 && batch[1]!.Negative! > 0.5 && Math.abs(batch[2]!.Positive! - 0.5) < 1e-6, 'texts of any length, the empty one too');

  const bad = await post(url, '[1, 2]', 'application/json');
  t.equal(bad.status, 400, 'a JSON list is not text');
  t.match(await errorBody(bad), { code: 400, message: /^Expected text/ });
});

t.test('text_classifier without vocab.txt fails to load, with a clear error', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) =>
      buildMar(store, { modelName: 'novocab', version: '1.0', handler: 'text_classifier', serializedFile: join(FIXTURES, 'word_sentiment.onnx') }),
  });
  const res = await fetch(`${server.urls.management}/models?url=novocab.mar&initial_workers=1&synchronous=true`, { method: 'POST' });
  t.equal(res.status, 500);
  t.match(await errorBody(res), { code: 500, type: 'InternalServerException' });
});

t.test('text_classifier behind service_envelope=json: an instance {"text": ...} is read by its one named input', async (t) => {
  const files = tempDir(t);
  writeFileSync(join(files, 'vocab.txt'), ['<pad>', '<unk>', 'good', 'great', 'love', 'bad'].join('\n') + '\n');
  const server = await startTestServer(t, {
    prepare: (store) =>
      buildMar(store, {
        modelName: 'sentiment',
        version: '1.0',
        handler: 'text_classifier',
        serializedFile: join(FIXTURES, 'word_sentiment.onnx'),
        extraFiles: join(files, 'vocab.txt'),
      }),
    properties: { load_models: 'sentiment.mar', service_envelope: 'json' },
  });
  const res = await post(`${server.urls.inference}/predictions/sentiment`, JSON.stringify({ instances: [{ text: 'good' }, 'bad'] }), 'application/json');
  t.equal(res.status, 200);
  const { predictions } = (await res.json()) as { predictions: Array<Record<string, number>> };
  t.ok(predictions[0]!['1']! > 0.5 && predictions[1]!['0']! > 0.5, 'good, then bad');
});

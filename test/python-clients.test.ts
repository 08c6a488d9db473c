// Clients as they are: the requests python-requests really sends (Debian's python3-requests),
// against the shipped model-store archives (the envelope tests: their mnist without its warm-up).
// `files={"data": f}` sends a part with a filename and no Content-Type; `data={"content":
// image_bytes}` url-encodes raw bytes, as the Flask app this project started from posted both of
// its images.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t, { type Test } from 'tap';
import { buildMnistMar, FIXTURES, MNIST_DIR, ROOT, sharedServer, startTestServer, tempDir, waitReady, type TestServer } from './helpers.js';

const PYTHON = '/usr/bin/python3';
const run = promisify(execFile);
const SEVEN = join(MNIST_DIR, 'digits', '7_0.png');

interface Answer {
  status: number;
  contentType: string | null;
  body: Buffer;
}

/**
 * Requests made by python-requests one after another, in one Python (test/fixtures/requests_client.py);
 * the server is in this process, so never spawnSync.
 */
async function pythonPosts(specs: Array<Record<string, unknown>>): Promise<Answer[]> {
  const { stdout } = await run(PYTHON, [join(FIXTURES, 'requests_client.py'), JSON.stringify(specs)], { encoding: 'utf8', timeout: 150_000 });
  const answers = JSON.parse(stdout) as Array<{ status: number; content_type: string | null; body_b64: string }>;
  return answers.map((out) => ({ status: out.status, contentType: out.content_type, body: Buffer.from(out.body_b64, 'base64') }));
}

async function pythonPost(spec: Record<string, unknown>): Promise<Answer> {
  const [answer] = await pythonPosts([spec]);
  return answer!;
}

/** A server that loads `models` from the store `prepare` fills, each READY. */
async function serveStore(t: Test, prepare: (store: string) => void, models: string[], properties: Record<string, string>): Promise<TestServer> {
  const server = await startTestServer(t, { prepare, properties: { load_models: models.map((m) => `${m}.mar`).join(','), ...properties } });
  for (const m of models) await waitReady(server.urls.management, m);
  return server;
}

function serveShipped(t: Test, models: string[], properties: Record<string, string> = {}): Promise<TestServer> {
  return serveStore(
    t,
    (store) => {
      for (const m of models) copyFileSync(join(ROOT, 'model-store', `${m}.mar`), join(store, `${m}.mar`));
    },
    models,
    properties,
  );
}

/**
 * examples/mnist (the shipped mnist.mar's handler and model) archived with no model-config.yaml,
 * for the envelope tests: what they show is the front end's and the worker's unwrapping, and the
 * shipped archive's warm-up (up to 400 batches of 8, 0.5 of its worker's 0.6 CPU-s) would run
 * once per envelope's server.
 */
function serveMnist(t: Test, properties: Record<string, string>): Promise<TestServer> {
  return serveStore(t, (store) => buildMnistMar(store), ['mnist'], properties);
}

/**
 * The shipped mnist.mar with no envelope, for the clients that only classify a digit; its front
 * end does not warm itself up (2 s of predictions on 32 connections in this process, which the
 * clients do not need; front-end-warm-up.test.ts tests it).
 */
const mnist = sharedServer((t) => serveShipped(t, ['mnist'], { front_end_warmup_ms: '0' }));

t.test('python-requests against mnist.mar: files={"data": f}, a Flask-style field name, an url-encoded image', async (t) => {
  const server = await mnist();
  const url = `${server.urls.inference}/predictions/mnist`;
  const [asFile, flask, form] = (await pythonPosts([
    { url, files: { data: SEVEN } },
    { url, files: { file: SEVEN } },
    { url, data: { data: `@${SEVEN}` } },
  ])) as [Answer, Answer, Answer];
  t.same([asFile.status, asFile.body.toString()], [200, '7'], 'files={"data": open(f, "rb")}: a part with a filename and no type stays bytes');
  t.same([flask.status, flask.body.toString()], [200, '7'], 'files={"file": ...}: the only file part, whatever its name');
  t.same([form.status, form.body.toString()], [200, '7'], 'data={"data": image_bytes}: the url-encoded bytes, not UTF-8 text');
});

t.test("the seed's Flask app, unchanged: both images as raw bytes in an url-encoded form, a stylized PNG back from nst.mar", async (t) => {
  const server = await serveShipped(t, ['nst']);
  const dir = tempDir(t);
  const style = join(dir, 'style.jpg');
  writeFileSync(
    style,
    await sharp({ create: { width: 96, height: 96, channels: 3, background: { r: 200, g: 40, b: 30 } } })
      .jpeg()
      .toBuffer(),
  );
  const answer = await pythonPost({
    url: `${server.urls.inference}/predictions/nst`,
    data: { content: `@${join(ROOT, 'examples', 'nst', 'content-house.png')}`, style: `@${style}`, steps: '2', size: '64' },
  });
  t.equal(answer.status, 200, answer.status === 200 ? 'stylized' : answer.body.toString());
  const meta = await sharp(answer.body).metadata();
  t.equal(meta.format, 'png');
  t.equal(Math.max(meta.width ?? 0, meta.height ?? 0), 64, 'at the size asked');
});

t.test("KServe v2 through python-requests' json=: the FP32 tensor and the BYTES sample with shape [-1]", async (t) => {
  const server = await serveMnist(t, { service_envelope: 'kservev2' });
  const url = `${server.urls.inference}/v2/models/mnist/infer`;
  const samples = ['mnist_v2_tensor.json', 'mnist_v2_bytes.json'];
  const answers = await pythonPosts(samples.map((sample) => ({ url, json: join(FIXTURES, 'kserve', sample) })));
  for (const [i, sample] of samples.entries()) {
    const answer = answers[i]!;
    t.equal(answer.status, 200, sample);
    t.match(JSON.parse(answer.body.toString()), { model_name: 'mnist', outputs: [{ datatype: 'INT64', data: [0] }] }, `${sample}: the digit 0`);
  }
});

t.test('service_envelope=body unwraps one level, as TorchServe\'s: a JSON {"data": base64} classifies', async (t) => {
  const server = await serveMnist(t, { service_envelope: 'body' });
  const dir = tempDir(t);
  const body = join(dir, 'seven.json');
  writeFileSync(body, JSON.stringify({ data: readFileSync(SEVEN).toString('base64') }));
  const answer = await pythonPost({ url: `${server.urls.inference}/predictions/mnist`, json: body });
  t.same([answer.status, answer.body.toString()], [200, '7']);
  const raw = await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'PUT', body: readFileSync(SEVEN) });
  t.equal(await raw.text(), '7', 'and a raw image body still does');
});

t.test(
  'TF Serving\'s named inputs, {"instances": [{"<name>": {"b64": ...}}]}, reach the handler decoded, as TorchServe\'s json and kserve envelopes decode them',
  async (t) => {
    const b64 = (digit: string): { b64: string } => ({ b64: readFileSync(join(MNIST_DIR, 'digits', `${digit}.png`)).toString('base64') });
    const instances = [{ data: b64('7_0') }, { image: b64('3_0') }, b64('2_0')];
    for (const [envelope, path] of [
      ['json', '/predictions/mnist'],
      ['kserve', '/v1/models/mnist:predict'],
    ] as const) {
      const server = await serveMnist(t, { service_envelope: envelope });
      const res = await fetch(`${server.urls.inference}${path}`, {
        method: 'POST',
        body: JSON.stringify({ instances }),
        headers: { 'content-type': 'application/json' },
      });
      t.same([res.status, await res.json()], [200, { predictions: [7, 3, 2] }], `${envelope}: "data", any other name, and a bare b64`);
    }
  },
);

t.test('curl --data-binary @digit.png, which labels the image an url-encoded form: bytes no form could hold are taken as the raw body', async (t) => {
  const server = await mnist();
  const res = await fetch(`${server.urls.inference}/predictions/mnist`, {
    method: 'POST',
    body: readFileSync(SEVEN),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.same([res.status, await res.text()], [200, '7']);
});

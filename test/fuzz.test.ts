// Seeded random requests against every kind of route: garbage bodies, wrong and broken
// content-types, truncated images, malformed JSON and KServe bodies, odd parameters. Whatever
// comes in, the answer is a TorchServe-shaped JSON error or a result, never "Worker died." or a
// dropped connection, and no worker crashes. Bounded: a fixed number of requests. FUZZ_SEED=<n>
// runs another sequence; the seed is in the test's name, so a failure can be replayed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { grpcClient, unaryCall } from './grpc-client.js';
import { buildColoursMar, buildMar, buildMnistMar, FIXTURES, MNIST_DIR, seededRandom, sharedServer, startTestServer } from './helpers.js';

const REQUESTS = 400;
const SEED = Number(process.env.FUZZ_SEED ?? 20261201);

/**
 * The server both tests fuzz: mnist, colours and seg. The REST fuzz scales only seg (and a model
 * that is not there), so the gRPC fuzz after it finds mnist's and colours' workers as they were
 * started, and its "no worker died" covers both fuzzes; its calls are far under max_request_size.
 */
const fuzzed = sharedServer((t) =>
  startTestServer(t, {
    prepare: (store) => {
      buildMnistMar(store);
      buildColoursMar(store);
      buildMar(store, { modelName: 'seg', version: '1.0', handler: 'image_segmenter', serializedFile: join(FIXTURES, 'colour_segmenter.onnx') });
    },
    properties: { load_models: 'mnist.mar,colours.mar,seg.mar', max_request_size: '200000', enable_model_api: 'true' },
  }),
);

t.test(`${REQUESTS} random requests (seed ${SEED}): every answer is a result or a JSON error, no worker dies`, async (t) => {
  const server = await fuzzed();
  const random = seededRandom(SEED);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const bytes = (max: number): Buffer => Buffer.from(Array.from({ length: Math.floor(random() * max) }, () => Math.floor(random() * 256)));
  const png = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  const cut = (b: Buffer): Buffer => b.subarray(0, Math.floor(random() * b.length));
  const flip = (b: Buffer): Buffer => {
    const copy = Buffer.from(b);
    for (let i = 0; i < 8; i++) copy[Math.floor(random() * copy.length)] = Math.floor(random() * 256);
    return copy;
  };
  const b64 = (b: Buffer): string => b.toString('base64');

  const bodies: Array<() => Buffer | string | undefined> = [
    () => undefined,
    () => bytes(2048),
    () => png,
    () => cut(png),
    () => flip(png),
    () => '{"instances": [{"data": "' + b64(pick([png, cut(png), bytes(64)])) + '", "target": ' + pick(['0', '2', '-1', '"x"', '1e309', 'null']) + '}]}',
    () => '{"instances": ' + pick(['null', '[]', '{}', '"x"', '[1, [2, [3]]]', '[{"b64": "!!"}]']) + '}',
    () =>
      '{"inputs": [{"name": "x", "shape": ' +
      pick(['[1]', '[-1]', '[1e9]', '"s"', '[3, 224, 224]']) +
      ', "datatype": ' +
      pick(['"FP32"', '"BYTES"', '"NOPE"', '7']) +
      ', "data": ' +
      pick(['[1]', '[]', '"x"', '[[1, 2], 3]']) +
      '}]}',
    () => '['.repeat(Math.floor(random() * 5000)) + ']'.repeat(Math.floor(random() * 5000)),
    () => '{"data": ' + pick(['1', '"' + b64(png) + '"', '{"b64": "' + b64(cut(png)) + '"}', '[[[0.5]]]', 'true']) + '}',
    () =>
      '--x\r\nContent-Disposition: form-data; name="data"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n' +
      pick(['', 'abc', png.toString('latin1')]) +
      pick(['\r\n--x--\r\n', '\r\n--x', '']),
    () => Buffer.alloc(250_000, 1),
  ];
  const contentTypes = [
    undefined,
    'application/json',
    'text/plain',
    'image/png',
    'application/octet-stream',
    'multipart/form-data; boundary=x',
    'multipart/form-data',
    'application/x-www-form-urlencoded',
    ';;;',
    'application/json; charset=nope',
  ];
  const models = ['mnist', 'colours', 'seg', 'nope', '..%2F..', 'mnist%00', 'a'.repeat(300)];
  const paths: Array<() => { url: string; method: string }> = [
    () => ({ url: `${server.urls.inference}/predictions/${pick(models)}`, method: 'POST' }),
    () => ({ url: `${server.urls.inference}/predictions/${pick(models)}/${pick(['1.0', '9', '', '..', 'all'])}`, method: pick(['POST', 'PUT', 'GET']) }),
    () => ({ url: `${server.urls.inference}/explanations/${pick(models)}`, method: 'POST' }),
    () => ({ url: `${server.urls.inference}/v1/models/${pick(models)}:${pick(['predict', 'explain', 'nope'])}`, method: 'POST' }),
    () => ({ url: `${server.urls.inference}/v2/models/${pick(models)}/${pick(['infer', 'explain'])}`, method: 'POST' }),
    () => ({ url: `${server.urls.inference}/invocations?model_name=${pick(models)}`, method: 'POST' }),
    () => ({ url: `${server.urls.management}/models/${pick(models)}?customized=${pick(['true', 'false', 'x'])}`, method: 'GET' }),
    () => ({ url: `${server.urls.management}/models?limit=${pick(['-1', '0', 'x', '99999999999'])}&next_page_token=${pick(['', '-5', 'z'])}`, method: 'GET' }),
    // Not min_worker=-1: its 500 is TorchServe's, pinned by the peer tests (docs/compatibility.md, B22).
    () => ({
      url: `${server.urls.management}/models/${pick(['nope', 'seg'])}?min_worker=${pick(['x', '0', '1', '2'])}&max_worker=${pick(['0', '1', 'x'])}`,
      method: 'PUT',
    }),
    () => ({
      url: `${server.urls.management}/models?url=${pick(['', 'x.mar', '../../etc/passwd', 'http://127.0.0.1:1/a.mar', 'file:///etc/passwd', '%00'])}&model_name=${pick(models)}`,
      method: 'POST',
    }),
  ];

  const seen = new Map<number, number>();
  for (let i = 0; i < REQUESTS; i++) {
    const { url, method } = pick(paths)();
    const body = method === 'GET' ? undefined : pick(bodies)();
    const contentType = pick(contentTypes);
    const what = `#${i} ${method} ${url.replace(/^http:\/\/[^/]+/, '')} (${contentType ?? 'no type'}, ${body === undefined ? 'no body' : `${body.length} bytes`})`;
    const res = await fetch(url, { method, body, headers: contentType ? { 'content-type': contentType } : {}, signal: AbortSignal.timeout(30_000) });
    const text = await res.text();
    seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
    if (res.status >= 400) {
      let error: { code?: unknown; type?: unknown; message?: unknown } = {};
      try {
        error = JSON.parse(text) as typeof error;
      } catch {
        /* checked below */
      }
      if (error.code !== res.status || typeof error.type !== 'string' || typeof error.message !== 'string')
        t.fail(`${what}: not a TorchServe error body: ${text.slice(0, 200)}`);
      if (res.status === 500 || res.status === 507) t.fail(`${what}: ${res.status} ${text.slice(0, 200)}`);
    }
  }
  t.comment(
    `statuses: ${[...seen]
      .sort((a, b) => a[0] - b[0])
      .map(([s, n]) => `${s} x${n}`)
      .join(', ')}`,
  );
  t.ok(
    [...seen.keys()].every((s) => (s >= 200 && s < 300) || (s >= 400 && s < 500) || s === 501 || s === 503),
    'only results, 4xx, 501 and 503',
  );
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, 'still healthy');
  const metrics = await (await fetch(`${server.urls.metrics!}/metrics`)).text();
  t.notMatch(metrics, /^ts_worker_restarts_total\{.*\} [1-9]/m, 'no worker died');
  t.equal(await (await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: png })).text(), '7', 'and still right');
});

t.test(`gRPC Predictions, ${REQUESTS / 4} random calls (seed ${SEED}): an answer or a status with details, no worker dies`, async (t) => {
  const server = await fuzzed();
  const inference = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  const random = seededRandom(SEED + 1);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const png = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  const values = [
    () => Buffer.alloc(0),
    () => Buffer.from(Array.from({ length: Math.floor(random() * 512) }, () => Math.floor(random() * 256))),
    () => png.subarray(0, Math.floor(random() * png.length)),
    () => png,
    () => Buffer.from('{"instances": [1, 2]}'),
  ];
  const codes = new Map<number, number>();
  for (let i = 0; i < REQUESTS / 4; i++) {
    const input: Record<string, Buffer> = {};
    for (let k = Math.floor(random() * 3); k > 0; k--) input[pick(['data', 'body', 'target', 'x'])] = pick(values)();
    const request = { model_name: pick(['mnist', 'colours', 'nope', '']), model_version: pick(['', '1.0', '2']), input };
    const answer = await unaryCall(inference, 'Predictions', request);
    codes.set(answer.code, (codes.get(answer.code) ?? 0) + 1);
    if (answer.code !== grpc.status.OK && !answer.details) t.fail(`#${i} ${JSON.stringify(Object.keys(input))}: status ${answer.code} without details`);
    if (answer.details === 'Worker died.') t.fail(`#${i}: Worker died.`);
  }
  t.comment(`status codes: ${[...codes].map(([c, n]) => `${c} x${n}`).join(', ')}`);
  t.ok(codes.has(grpc.status.OK), 'some calls succeed');
  const metrics = await (await fetch(`${server.urls.metrics!}/metrics`)).text();
  t.notMatch(metrics, /^ts_worker_restarts_total\{.*\} [1-9]/m, 'no worker died');
  t.equal((await unaryCall(inference, 'Ping', {})).code, grpc.status.OK);
});

// KServe v1 and v2 and the Open Inference Protocol through a real image model: the envelopes in and
// out, their 400s, and model metadata from the handler. Readiness and the OIP extras that ask no
// handler are test/unit/kserve-routes.test.ts's, in process.
import sharp from 'sharp';
import t, { type Test } from 'tap';
import { buildColoursMar, errorBody, startTestServer, type TestServer } from './helpers.js';

function serveColours(t: Test, properties: Record<string, string>, env: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => buildColoursMar(store),
    properties: { load_models: 'colours.mar', ...properties },
    env,
  });
}

async function pngBase64(r: number, g: number, b: number): Promise<string> {
  return (
    await sharp({ create: { width: 64, height: 48, channels: 3, background: { r, g, b } } })
      .png()
      .toBuffer()
  ).toString('base64');
}

const post = (url: string, body: unknown): Promise<Response> =>
  fetch(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } });

/** The most probable class of an image_classifier answer. */
/** How many batches the model's workers have taken (a describe job is a batch of its own). */
async function batchCount(server: TestServer, model: string): Promise<number> {
  const text = await (await fetch(`${server.urls.metrics}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('ts_batch_size_count{') && l.includes(`model_name="${model}"`));
  return Number(line?.slice(line.lastIndexOf(' ') + 1) ?? 0);
}

const top = (answer: Record<string, number>): string => Object.entries(answer).sort((a, b) => b[1] - a[1])[0]![0];

t.test('KServe v1: {"instances": [...]} in, {"predictions": [...]} out, one per instance; :explain answers "explanations"', async (t) => {
  const server = await serveColours(t, { service_envelope: 'kserve' });
  const url = `${server.urls.inference}/v1/models/colours`;
  const body = { instances: [{ data: await pngBase64(250, 10, 10) }, { b64: await pngBase64(10, 10, 250) }, await pngBase64(10, 250, 10)] };
  const res = await post(`${url}:predict`, body);
  t.equal(res.status, 200);
  const { predictions } = (await res.json()) as { predictions: Array<Record<string, number>> };
  t.same(predictions.map(top), ['0', '2', '1'], 'an object instance is the row ({"data": base64}); {"b64"} and a bare string are its data');

  const explained = (await (await post(`${url}:explain`, { instances: [{ data: await pngBase64(250, 10, 10) }] })).json()) as Record<string, unknown>;
  t.same(Object.keys(explained), ['explanations']);

  t.equal((await post(`${url}:other`, body)).status, 404, 'only :predict and :explain');
  t.equal((await post(url, body)).status, 404, 'no verb');
  const unknown = await post(`${server.urls.inference}/v1/models/nope:predict`, body);
  t.equal(unknown.status, 404);
  t.equal((await errorBody(unknown)).message, 'Model not found: nope');
});

t.test('a request the envelope cannot read gets its own 400; the others of its batch are answered', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildColoursMar(store),
    properties: { service_envelope: 'kserve' },
  });
  const reg = await fetch(`${server.urls.management}/models?url=colours.mar&batch_size=4&max_batch_delay=300&initial_workers=1`, { method: 'POST' });
  t.equal(reg.status, 200);
  const url = `${server.urls.inference}/v1/models/colours:predict`;
  const good = { instances: [await pngBase64(250, 10, 10)] };
  const [a, bad, notJson, b] = await Promise.all([post(url, good), post(url, { inputs: [] }), post(url, '{"instances": [1,'), post(url, good)]);
  t.same([a.status, bad.status, notJson.status, b.status], [200, 400, 400, 200]);
  t.same(await errorBody(bad), { code: 400, type: 'BadRequestException', message: 'Expected a JSON body {"instances": [...]}' });
  t.same(((await a.json()) as { predictions: unknown[] }).predictions.length, 1);
  const ping = await fetch(`${server.urls.inference}/ping`);
  t.equal(ping.status, 200, 'the server is up');
});

t.test('KServe v2: each input is a row; outputs named after the inputs; the id echoed', async (t) => {
  const server = await serveColours(t, { service_envelope: 'kservev2' });
  const url = `${server.urls.inference}/v2/models/colours/infer`;
  const res = await post(url, {
    id: 'req-1',
    inputs: [
      { name: 'red', shape: [1], datatype: 'BYTES', data: [await pngBase64(250, 10, 10)] },
      { name: 'blue', shape: [1], datatype: 'BYTES', data: [await pngBase64(10, 10, 250)] },
    ],
  });
  t.equal(res.status, 200);
  const answer = (await res.json()) as {
    id: string;
    model_name: string;
    model_version: string;
    outputs: Array<{ name: string; datatype: string; shape: number[]; data: Array<Record<string, number>> }>;
  };
  t.match(answer, { id: 'req-1', model_name: 'colours', model_version: '1.0' });
  t.same(
    answer.outputs.map((o) => [o.name, o.datatype, o.shape]),
    [
      ['red', 'BYTES', [1]],
      ['blue', 'BYTES', [1]],
    ],
  );
  t.same(
    answer.outputs.map((o) => top(o.data[0]!)),
    ['0', '2'],
  );

  // An FP32 tensor is the transformed image itself (CHW): strong in the green plane only.
  const plane = 224 * 224;
  const tensor = Array.from({ length: 3 * plane }, (_, i) => (i >= plane && i < 2 * plane ? 2 : -2));
  const res2 = await post(url, { inputs: [{ name: 'input-0', shape: [3, 224, 224], datatype: 'FP32', data: tensor }] });
  t.equal(res2.status, 200);
  const answer2 = (await res2.json()) as { id: string; outputs: Array<{ data: Array<Record<string, number>> }> };
  t.equal(answer2.id, res2.headers.get('x-request-id'), 'without an id in the body, the request id');
  t.equal(top(answer2.outputs[0]!.data[0]!), '1');
});

t.test('KServe v2: malformed inputs are 400s that say what is wrong', async (t) => {
  const server = await serveColours(t, { service_envelope: 'kservev2' });
  const url = `${server.urls.inference}/v2/models/colours/infer`;
  const cases: Array<[unknown, string | RegExp]> = [
    ['not json', 'Expected a JSON body {"inputs": [{"name", "shape", "datatype", "data"}]}'],
    [{ inputs: [] }, 'Expected a JSON body {"inputs": [{"name", "shape", "datatype", "data"}]}'],
    [{ inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3] }] }, 'Input "x": shape [2, 2] holds 4 values, "data" has 3'],
    [{ inputs: [{ name: 'x', shape: [1], datatype: 'FLOAT', data: [1] }] }, /^Input "x": "datatype" must be one of BOOL, /],
    [{ inputs: [{ name: 'x', shape: [-1], datatype: 'FP32', data: [1] }] }, 'Input "x": "shape" must be a list of non-negative integers'],
    [{ inputs: [{ shape: [1], datatype: 'FP32', data: [1] }] }, 'Input 0 has no "name"'],
    [
      { inputs: [{ name: 'x', shape: new Array(5000).fill(1), datatype: 'FP32', data: [1] }] },
      'Input "x": "shape" has 5000 dimensions, at most 32 are accepted',
    ],
    [{ inputs: [{ name: 'x', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, /^Expected an image, or a 3x224x224 tensor/],
  ];
  for (const [body, message] of cases) {
    const res = await post(url, body);
    t.equal(res.status, 400, JSON.stringify(body).slice(0, 60));
    t.match((await errorBody(res)).message, message);
  }
});

t.test('Open Inference Protocol REST model metadata and readiness, as its gRPC ModelMetadata and ModelReady', async (t) => {
  const server = await serveColours(t, { ts_open_inference_protocol: 'true' });
  const base = server.urls.inference;
  t.same(await (await fetch(`${base}/v2/models/colours`)).json(), {
    name: 'colours',
    versions: ['1.0'],
    platform: '',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, 224, 224] }],
    outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 3] }],
  });
  t.same(await (await fetch(`${base}/v2/models/colours/ready`)).json(), { name: 'colours', ready: true });
  const batches = await batchCount(server, 'colours');
  t.ok(batches >= 1, `the first metadata call asked the handler (${batches} batches)`);
  for (let i = 0; i < 3; i++) t.equal((await fetch(`${base}/v2/models/colours`)).status, 200);
  t.equal(await batchCount(server, 'colours'), batches, 'the handler was asked once: later answers wait for no worker');
  const unknown = await fetch(`${base}/v2/models/nope`);
  t.equal(unknown.status, 404);
  t.match(await unknown.json(), { code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' });
  t.equal((await fetch(`${base}/v2/models/nope/ready`)).status, 404);
});

// The inference listener's prediction routes, in process: which model a route names, what reaches
// the handler from the query, body and form, and each route's errors (SageMaker's /invocations and
// /models/{m}/invoke, the legacy /{m}/predict, OPTIONS describing a model, the headers only a
// route may set). That a real handler in a real worker answers through them is
// test/inference-routes.test.ts's.
import t, { type Test } from 'tap';
import type { FakeAnswer } from './fake-worker.js';
import { errorOf, inProcessServer, type InProcessServer } from './in-process.js';

/** A server with `models` in its store, served from start-up (load_models). */
function serve(t: Test, models: string[]): Promise<InProcessServer> {
  return inProcessServer(t, { models, properties: { load_models: models.map((m) => `${m}.mar`).join(',') } });
}

async function answer(server: InProcessServer, url: string, payload: string | Buffer = 'x', headers: Record<string, string> = {}): Promise<FakeAnswer> {
  const res = await server.inference({ method: 'POST', url, payload, headers });
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return res.json();
}

function form(fields: Record<string, string>): { payload: Buffer; headers: Record<string, string> } {
  const boundary = 'tsserve-unit-boundary';
  const parts = Object.entries(fields).map(
    ([name, value]) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\nContent-Type: text/plain\r\n\r\n${value}\r\n`,
  );
  return { payload: Buffer.from(`${parts.join('')}--${boundary}--\r\n`), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

t.test('/invocations: the model from ?model_name=, query parameters first as inputs, then the body', async (t) => {
  const server = await serve(t, ['echo', 'other']);
  const byQuery = await answer(server, '/invocations?model_name=echo&topk=3', 'hi', { 'content-type': 'text/plain' });
  t.same(byQuery.inputs, { model_name: 'echo', topk: '3', body: 'hi' });
  t.equal(byQuery.headers.explain, undefined, 'no explain header on SageMaker routes');

  const { payload, headers } = form({ model_name: 'echo', data: 'abc' });
  const byField = await answer(server, '/invocations', payload, headers);
  t.same(byField.inputs, { model_name: 'echo', data: 'abc' }, 'a model_name form field names the model');

  const none = await server.inference({ method: 'POST', url: '/invocations', payload: 'x' });
  t.same(errorOf(none), { code: 400, type: 'BadRequestException', message: 'Parameter model_name is required.' }, 'two start-up models and no model_name');
  const unknown = await server.inference({ method: 'POST', url: '/invocations?model_name=nope', payload: 'x' });
  t.same([unknown.statusCode, errorOf(unknown).message], [404, 'Model not found: nope']);
});

t.test('/invocations without model_name serves the only model loaded at start-up', async (t) => {
  const server = await serve(t, ['echo']);
  t.same(Object.keys((await answer(server, '/invocations')).inputs), ['body']);
});

t.test('/models/{m}/invoke and the legacy /{m}/predict, /{m}/{v}/predict', async (t) => {
  const server = await serve(t, ['echo']);
  t.same(Object.keys((await answer(server, '/models/echo/invoke?a=1')).inputs), ['a', 'body']);
  const legacy = await answer(server, '/echo/predict?a=1&a=22');
  t.equal(legacy.inputs.a, '22', 'a repeated query parameter: the last value wins');
  t.same(Object.keys((await answer(server, '/echo/1.0/predict')).inputs), ['body']);
  const noVersion = await server.inference({ method: 'POST', url: '/echo/9.9/predict', payload: 'x' });
  t.same([noVersion.statusCode, errorOf(noVersion).message], [404, 'Model version: 9.9 does not exist for model: echo']);
  t.equal((await server.inference({ method: 'POST', url: '/models/echo/other' })).statusCode, 404, '/models/{m}/x is not a route');
});

t.test('/predictions and /explanations: the route sets explain and url_path; a client cannot', async (t) => {
  const server = await serve(t, ['echo']);
  const predicted = await answer(server, '/predictions/echo/1.0/a/b', 'x', { explain: 'True', describe: 'True' });
  t.same([predicted.headers.explain, predicted.headers.url_path, predicted.headers.describe], ['False', 'a/b', undefined]);
  const explained = await answer(server, '/explanations/echo', 'x', { explain: 'False' });
  t.equal(explained.headers.explain, 'True', '/explanations explains, whatever the client says');
  for (const url of ['/invocations?model_name=echo', '/echo/predict', '/models/echo/invoke']) {
    const headers = (await answer(server, url, 'x', { explain: 'True', describe: 'True' })).headers;
    t.same([headers.explain, headers.describe], [undefined, undefined], `${url}: a client's explain and describe headers are dropped`);
  }
});

t.test('OPTIONS on a prediction path describes the model; on a management path, its management', async (t) => {
  const server = await serve(t, ['echo']);
  const inference = await server.inference({ method: 'OPTIONS', url: '/predictions/echo' });
  t.equal(inference.statusCode, 200);
  const doc = inference.json<{ openapi: string; info: { title: string }; paths: Record<string, unknown> }>();
  t.equal(doc.openapi, '3.0.1');
  t.equal(doc.info.title, 'RESTful API for: echo');
  t.same(Object.keys(doc.paths), ['/predictions/echo', '/v1/models/{model_name}:predict', '/v2/models/{model_name}/infer']);
  t.equal((await server.inference({ method: 'OPTIONS', url: '/predictions/nope' })).statusCode, 404);
  t.equal((await server.inference({ method: 'OPTIONS', url: '/predictions/echo/9.9' })).statusCode, 404);

  const management = await server.management({ method: 'OPTIONS', url: '/models/echo/1.0' });
  t.equal(management.statusCode, 200);
  t.equal(management.json<{ info: { title: string } }>().info.title, 'RESTful Management API for: echo');
  t.equal((await server.management({ method: 'OPTIONS', url: '/models/nope' })).statusCode, 404);
  t.equal((await server.management({ method: 'PATCH', url: '/models/echo' })).statusCode, 405, 'other methods are still 405');
});

t.test('/ping: Healthy while every model has its minimum of workers', async (t) => {
  const server = await serve(t, ['echo']);
  const ping = await server.inference({ method: 'GET', url: '/ping' });
  t.same([ping.statusCode, ping.json()], [200, { status: 'Healthy' }]);
});

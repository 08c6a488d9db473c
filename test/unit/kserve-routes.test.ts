// KServe's and the Open Inference Protocol's routes that ask no handler, in process: v1 readiness
// on both listeners, and the OIP extras (health, server metadata, versioned inference) only when
// ts_open_inference_protocol is on. Predictions through the envelopes, and model metadata (which
// asks the handler), are test/kserve.test.ts's.
import t from 'tap';
import { inProcessServer } from './in-process.js';

t.test('KServe v1 readiness on the management listener', async (t) => {
  const server = await inProcessServer(t, { models: ['colours'], properties: { load_models: 'colours.mar' } });
  const ready = await server.management({ method: 'GET', url: '/v1/models/colours' });
  t.same([ready.statusCode, ready.json()], [200, { name: 'colours', ready: true }]);
  t.equal((await server.management({ method: 'GET', url: '/v1/models/nope' })).statusCode, 404);
  t.equal((await server.management({ method: 'POST', url: '/v1/models/colours' })).statusCode, 405);
  t.same(
    (await server.inference({ method: 'GET', url: '/v1/models/colours' })).json(),
    { name: 'colours', ready: true },
    'the inference listener answers it too',
  );
  await server.management({ method: 'PUT', url: '/models/colours?min_worker=0&max_worker=0&synchronous=true' });
  t.same((await server.management({ method: 'GET', url: '/v1/models/colours' })).json(), { name: 'colours', ready: false }, 'no worker: not ready');
});

t.test('Open Inference Protocol extras: only when ts_open_inference_protocol is on', async (t) => {
  const off = await inProcessServer(t, { models: ['colours'], properties: { load_models: 'colours.mar' } });
  t.equal((await off.inference({ method: 'GET', url: '/v2/health/ready' })).statusCode, 404);

  for (const [what, properties, env] of [
    ['config.properties', { ts_open_inference_protocol: 'true' }, {}],
    ['TS_OPEN_INFERENCE_PROTOCOL=oip', {}, { TS_OPEN_INFERENCE_PROTOCOL: 'oip' }],
  ] as const) {
    const server = await inProcessServer(t, { models: ['colours'], properties: { load_models: 'colours.mar', ...properties }, env });
    const get = async (url: string): Promise<unknown> => (await server.inference({ method: 'GET', url })).json();
    t.same(await get('/v2/health/ready'), { ready: true }, what);
    t.same(await get('/v2/health/live'), { live: true });
    t.match(await get('/v2'), { name: 'Torchserve', extenstion: ['kserve', 'kubeflow'] });
    const versions = await server.inference({ method: 'POST', url: '/v2/models/colours/versions/1/infer' });
    t.same([versions.statusCode, versions.json()], [501, { error: 'Model versioning is not yet supported.' }]);
  }
});

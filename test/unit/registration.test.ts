// What a registration takes from where, in process: the register API's parameters (query or JSON
// body) and what the server cannot use of them (a Warning header and the log, the call still
// succeeding, as in TorchServe), the archive's model-config.yaml, config.properties' models=, the
// URLs allowed by default, and the API description of each listener. Downloads from a file server
// are test/register.test.ts's; worker processes are not needed to answer any of these.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { inProcessServer, storeArchive, type InProcessServer } from './in-process.js';

type Described = {
  minWorkers: number;
  maxWorkers: number;
  batchSize: number;
  maxBatchDelay: number;
  responseTimeout: number;
  jobQueueStatus: { remainingCapacity: number };
};

async function describe(server: InProcessServer, model: string): Promise<Described> {
  return (await server.management({ method: 'GET', url: `/models/${model}` })).json<Described[]>()[0]!;
}

/** A store whose echo.mar carries `yaml` as its model-config.yaml. */
function withYaml(yaml: string): (store: string) => void {
  return (store) => {
    const file = join(store, '..', 'model-config.yaml');
    writeFileSync(file, yaml);
    storeArchive(store, 'echo', { configFile: file });
  };
}

/** Each message is in the answer's Warning header, as TorchServe's clients read it, and in the log after `what`. */
function warnedOf(t: Test, server: InProcessServer, res: LightMyRequestResponse, what: string, messages: string[]): void {
  for (const message of messages) {
    t.ok(String(res.headers.warning ?? '').includes(`299 tsserve "${message.replaceAll('"', "'")}"`), `header: ${message}`);
    t.ok(
      server.log.some((l) => l.includes(`${what}: ${message}`)),
      `log: ${message}`,
    );
  }
}

t.test('register parameters from a JSON body', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  const res = await server.management({
    method: 'POST',
    url: '/models',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ url: 'echo.mar', model_name: 'digits', batch_size: 2, initial_workers: 1 }),
  });
  t.equal(res.statusCode, 200, res.body);
  t.match(
    await describe(server, 'digits'),
    { minWorkers: 1, batchSize: 2, maxBatchDelay: 100 },
    "a JSON body without max_batch_delay gets 100, not TorchServe's -10000",
  );
});

t.test('model-config.yaml in the archive sets workers, batching and timeouts', async (t) => {
  const server = await inProcessServer(t, {
    prepare: withYaml('minWorkers: 2\nmaxWorkers: 3\nbatchSize: 4\nmaxBatchDelay: 50\nresponseTimeout: 30\njobQueueSize: 7\nhandlerKey: for the handler\n'),
  });
  const reg = await server.management({ method: 'POST', url: '/models?url=echo.mar&response_timeout=99' });
  t.same(reg.json(), { status: 'Model "echo" Version: 1.0 registered with 2 initial workers' });
  const d = await describe(server, 'echo');
  t.match(d, { minWorkers: 2, maxWorkers: 3, batchSize: 4, maxBatchDelay: 50, jobQueueStatus: { remainingCapacity: 7 } });
  t.equal(d.responseTimeout, 30, "the YAML's responseTimeout beats the API's, as in TorchServe");
});

t.test("model-config.yaml: a key the server reads with a wrong value is named in a warning and its default used; the handler's own keys pass", async (t) => {
  const server = await inProcessServer(t, {
    prepare: withYaml('batchSize: -3\nuseJobTicket: maybe\nmaxWorkers: [1, 2]\ndeviceType: tpu\nmyHandlerSetting: 7\nresponseTimeout: 30\n'),
  });
  const res = await server.management({ method: 'POST', url: '/models?url=echo.mar&initial_workers=0' });
  t.equal(res.statusCode, 200, 'registered, as TorchServe registers it');
  const warned = server.log.filter((l) => l.includes('Model echo: model-config.yaml: '));
  t.equal(warned.length, 4, warned.join('\n'));
  for (const expected of [
    'batchSize: -3 is not allowed (batchSize is a whole number of at least 1); the default is used',
    'useJobTicket: "maybe" is not allowed (useJobTicket is true or false); the default is used',
    'maxWorkers: [1,2] is not allowed (maxWorkers is a whole number); the default is used',
    'deviceType: "tpu" is not allowed (deviceType is one of cpu, gpu); the default is used',
  ]) {
    t.ok(
      warned.some((l) => l.includes(expected)),
      expected,
    );
  }
  t.match(await describe(server, 'echo'), { batchSize: 1, responseTimeout: 30 }, 'the defaults for the bad values, the good ones kept');
});

t.test('models= in config.properties sets start-up workers and batching', async (t) => {
  const server = await inProcessServer(t, {
    models: ['echo'],
    properties: { load_models: 'echo.mar', models: '{"echo": {"1.0": {"minWorkers": 1, "maxWorkers": 2, "batchSize": 3, "maxBatchDelay": 20}}}' },
  });
  t.match(await describe(server, 'echo'), { minWorkers: 1, maxWorkers: 2, batchSize: 3, maxBatchDelay: 20 });
});

t.test('register parameters the server cannot use as written are named in a Warning header and the log; the call succeeds, as in TorchServe', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  const query = 'url=echo.mar&batch_size=dd&max_batch_delay=junk&initial_workers=-1&synchronous=maybe&batchsize=8&response_timeout=0';
  const res = await server.management({ method: 'POST', url: `/models?${query}` });
  t.equal(res.statusCode, 200, "registered: TorchServe's own tests expect 200 for batch_size=dd");
  warnedOf(t, server, res, 'Register "echo.mar"', [
    'batch_size="dd" is not a whole number; the default is used',
    'max_batch_delay="junk" is not a whole number; the default is used',
    'initial_workers="-1" is less than 0; 0 is used',
    'synchronous="maybe" is not true or false; false is used',
    'unknown parameter "batchsize" (did you mean batch_size?) is ignored',
    'response_timeout="0" is less than 1; the default is used',
  ]);
  t.match(await describe(server, 'echo'), { batchSize: 1, maxBatchDelay: 100, minWorkers: 0 }, 'the defaults are what is used');

  const clean = await server.management({ method: 'POST', url: '/models?url=echo.mar&model_name=other&batch_size=2&initial_workers=0' });
  t.same([clean.statusCode, clean.headers.warning], [200, undefined], 'a call with good parameters has no warning');

  const hostile = await server.management({
    method: 'POST',
    url: `/models?url=echo.mar&model_name=third&initial_workers=0&${encodeURIComponent('a\r\nSet-Cookie: x')}=${encodeURIComponent('\u00e9\n'.repeat(300))}`,
  });
  t.equal(hostile.statusCode, 200, 'a parameter name or value with line breaks and non-ASCII text cannot break the answer');
  t.equal(hostile.headers['set-cookie'], undefined);
  t.ok(String(hostile.headers.warning ?? '').length < 400, 'the warning is cut short');
  t.notOk(
    server.log.some((l) => l.includes('\nSet-Cookie')),
    'nor forge a log line',
  );
});

t.test('scale parameters the server cannot use as written are warned of as register does: min_worker=abc scales to the default', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  t.equal((await server.management({ method: 'POST', url: '/models?url=echo.mar&initial_workers=0' })).statusCode, 200);
  const res = await server.management({ method: 'PUT', url: '/models/echo?min_worker=abc&synchronous=true&minworker=2' });
  t.equal(res.statusCode, 200, 'scaled, as TorchServe does');
  t.equal(res.body, `{\n  "status": "Workers scaled to 1 for model: echo"\n}\n`, 'to the default, 1');
  warnedOf(t, server, res, 'Scale "echo"', [
    'min_worker="abc" is not a whole number; the default is used',
    'unknown parameter "minworker" (did you mean min_worker?) is ignored',
  ]);
  const clean = await server.management({ method: 'PUT', url: '/models/echo/1.0?min_worker=1&max_worker=1&synchronous=true' });
  t.same([clean.statusCode, clean.headers.warning], [200, undefined], 'a call with good parameters has no warning');
});

t.test('by default only the model store is allowed', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  const http = await server.management({ method: 'POST', url: '/models?url=http://127.0.0.1:1/echo.mar' });
  t.same(http.json(), { code: 404, type: 'ModelNotFoundException', message: 'Given URL http://127.0.0.1:1/echo.mar does not match any allowed URL(s)' });
  t.equal((await server.management({ method: 'POST', url: '/models?url=file:///etc/hostname' })).statusCode, 404, 'a file URL outside the store');
  const inside = await server.management({ method: 'POST', url: `/models?url=file://${join(server.store, 'echo.mar')}&initial_workers=0` });
  t.equal(inside.statusCode, 200, 'a file URL inside the store');
});

t.test('OPTIONS / describes the real routes of each listener in OpenAPI 3', async (t) => {
  const server = await inProcessServer(t);
  type Doc = { openapi: string; info: { title: string }; paths: Record<string, Record<string, unknown>> };
  const inference = (await server.inference({ method: 'OPTIONS', url: '/' })).json<Doc>();
  t.equal(inference.openapi, '3.0.1');
  t.equal(inference.info.title, 'TorchServe APIs');
  t.same(Object.keys(inference.paths).sort(), [
    '/explanations/{model}',
    '/explanations/{model}/{version}',
    '/explanations/{model}/{version}/{extra_path}',
    '/invocations',
    '/models/{model}/invoke',
    '/ping',
    '/predictions/{model}',
    '/predictions/{model}/{version}',
    '/predictions/{model}/{version}/{extra_path}',
    '/v1/models/{model}:predict',
    '/v2/models/{model}/explain',
    '/v2/models/{model}/infer',
    '/wfpredict/{name}',
    '/{model}/predict',
    '/{model}/{version}/predict',
  ]);
  const management = (await server.management({ method: 'GET', url: '/api-description' })).json<Doc>();
  t.same(Object.keys(management.paths['/models/{name}']!).sort(), ['delete', 'get', 'put']);
  t.ok(management.paths['/models/{name}/{version}/set-default'], 'set-default documented');
  const metrics = (await server.metrics({ method: 'POST', url: '/api-description' })).json<Doc>();
  t.same(Object.keys(metrics.paths), ['/metrics']);
  t.equal((await server.inference({ method: 'GET', url: '/' })).statusCode, 405, 'GET / is 405, as TorchServe');
});

// Registration from the store or a URL (allowed_urls, download size limit), by JSON body, and the
// settings an archive's model-config.yaml and config.properties' models= give a model.
import { createServer, type Server } from 'node:http';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMnistMar, startTestServer, tempDir } from './helpers.js';

type Describe = Array<{
  minWorkers: number;
  maxWorkers: number;
  batchSize: number;
  maxBatchDelay: number;
  responseTimeout: number;
  jobQueueStatus: { remainingCapacity: number };
}>;

/** A static file server on 127.0.0.1 that serves `files` by name. */
async function fileServer(t: Test, files: Record<string, Buffer>): Promise<string> {
  const server: Server = createServer((req, res) => {
    const body = files[(req.url ?? '').slice(1)];
    res.writeHead(body ? 200 : 404).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const address = server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

t.test('by default only the model store is allowed', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store) });
  const mgmt = server.urls.management;
  const http = await fetch(`${mgmt}/models?url=http://127.0.0.1:1/mnist.mar`, { method: 'POST' });
  t.equal(http.status, 404);
  t.same(await http.json(), { code: 404, type: 'ModelNotFoundException', message: 'Given URL http://127.0.0.1:1/mnist.mar does not match any allowed URL(s)' });
  const outside = await fetch(`${mgmt}/models?url=file:///etc/hostname`, { method: 'POST' });
  t.equal(outside.status, 404, 'a file URL outside the store');
  const inside = await fetch(`${mgmt}/models?url=file://${join(server.store, 'mnist.mar')}`, { method: 'POST' });
  t.equal(inside.status, 200, 'a file URL inside the store');
});

t.test('an allowed http URL is downloaded into the store, with a size limit', async (t) => {
  const source = tempDir(t);
  const mar = readFileSync(buildMnistMar(source, 'remote'));
  const base = await fileServer(t, { 'remote.mar': mar, 'big.mar': mar });
  const server = await startTestServer(t, {
    properties: { allowed_urls: 'http://127.0.0.1:[0-9]+/.*', max_download_size: String(mar.length + 10) },
  });
  const mgmt = server.urls.management;
  const ok = await fetch(`${mgmt}/models?url=${base}/remote.mar&initial_workers=0`, { method: 'POST' });
  t.equal(ok.status, 200, 'downloaded and registered');
  t.ok(existsSync(join(server.store, 'remote.mar')), 'saved in the model store under its file name');

  const again = await fetch(`${mgmt}/models?url=${base}/remote.mar&model_name=other`, { method: 'POST' });
  t.equal(again.status, 500);
  t.same(await again.json(), { code: 500, type: 'InternalServerException', message: 'Model file already exists remote.mar' });

  const missing = await fetch(`${mgmt}/models?url=${base}/nothing.mar`, { method: 'POST' });
  t.equal(missing.status, 400);
  t.same(await missing.json(), { code: 400, type: 'DownloadArchiveException', message: `Failed to download archive from: ${base}/nothing.mar` });

  t.equal((await fetch(`${mgmt}/models/remote`, { method: 'DELETE' })).status, 200);
  t.notOk(existsSync(join(server.store, 'remote.mar')), 'unregistering removes what was downloaded');

  const limited = await startTestServer(t, {
    properties: { allowed_urls: 'http://127.0.0.1:[0-9]+/.*', max_download_size: String(mar.length - 1) },
  });
  const big = await fetch(`${limited.urls.management}/models?url=${base}/big.mar`, { method: 'POST' });
  t.equal(big.status, 400, 'over max_download_size');
  t.same(readdirSync(limited.store), [], 'nothing partial left in the store');
});

t.test('register parameters from a JSON body', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store) });
  const res = await fetch(`${server.urls.management}/models`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url: 'mnist.mar', model_name: 'digits', batch_size: 2, initial_workers: 1 }),
  });
  t.equal(res.status, 200);
  const [d] = (await (await fetch(`${server.urls.management}/models/digits`)).json()) as Describe;
  t.match(d, { minWorkers: 1, batchSize: 2, maxBatchDelay: 100 }, "a JSON body without max_batch_delay gets 100, not TorchServe's -10000");
});

t.test('model-config.yaml in the archive sets workers, batching and timeouts', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      const yaml = join(store, '..', 'model-config.yaml');
      writeFileSync(yaml, 'minWorkers: 2\nmaxWorkers: 3\nbatchSize: 4\nmaxBatchDelay: 50\nresponseTimeout: 30\njobQueueSize: 7\nhandlerKey: for the handler\n');
      buildMnistMar(store, 'mnist', { configFile: yaml });
    },
  });
  const reg = await fetch(`${server.urls.management}/models?url=mnist.mar&response_timeout=99`, { method: 'POST' });
  t.equal(reg.status, 200);
  t.same(await reg.json(), { status: 'Model "mnist" Version: 1.0 registered with 2 initial workers' });
  const [d] = (await (await fetch(`${server.urls.management}/models/mnist`)).json()) as Describe;
  t.match(d, { minWorkers: 2, maxWorkers: 3, batchSize: 4, maxBatchDelay: 50, jobQueueStatus: { remainingCapacity: 7 } });
  t.equal(d!.responseTimeout, 30, "the YAML's responseTimeout beats the API's, as in TorchServe");
});

t.test('models= in config.properties sets start-up workers and batching', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMnistMar(store),
    properties: { load_models: 'mnist.mar', models: '{"mnist": {"1.0": {"minWorkers": 1, "maxWorkers": 2, "batchSize": 3, "maxBatchDelay": 20}}}' },
  });
  const [d] = (await (await fetch(`${server.urls.management}/models/mnist`)).json()) as Describe;
  t.match(d, { minWorkers: 1, maxWorkers: 2, batchSize: 3, maxBatchDelay: 20 });
});

t.test('OPTIONS / describes the real routes of each listener in OpenAPI 3', async (t) => {
  const server = await startTestServer(t);
  type Doc = { openapi: string; info: { title: string }; paths: Record<string, Record<string, unknown>> };
  const inference = (await (await fetch(server.urls.inference, { method: 'OPTIONS' })).json()) as Doc;
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
  const management = (await (await fetch(`${server.urls.management}/api-description`)).json()) as Doc;
  t.same(Object.keys(management.paths['/models/{name}']!).sort(), ['delete', 'get', 'put']);
  t.ok(management.paths['/models/{name}/{version}/set-default'], 'set-default documented');
  const metrics = (await (await fetch(`${server.urls.metrics!}/api-description`, { method: 'POST' })).json()) as Doc;
  t.same(Object.keys(metrics.paths), ['/metrics']);
  const get = await fetch(server.urls.inference);
  t.equal(get.status, 405, 'GET / is 405, as TorchServe');
});

t.test("model-config.yaml: a key the server reads with a wrong value is named in a warning and its default used; the handler's own keys pass", async (t) => {
  const log: string[] = [];
  const server = await startTestServer(t, {
    prepare: (store) => {
      const yaml = join(store, '..', 'model-config.yaml');
      writeFileSync(yaml, 'batchSize: -3\nuseJobTicket: maybe\nmaxWorkers: [1, 2]\ndeviceType: tpu\nmyHandlerSetting: 7\nresponseTimeout: 30\n');
      buildMnistMar(store, 'mnist', { configFile: yaml });
    },
    serverLog: (line) => log.push(line),
  });
  const res = await fetch(`${server.urls.management}/models?url=mnist.mar&initial_workers=0`, { method: 'POST' });
  t.equal(res.status, 200, 'registered, as TorchServe registers it');
  const warned = log.filter((l) => l.includes('Model mnist: model-config.yaml: '));
  t.equal(warned.length, 4, warned.join('\n'));
  for (const expected of [
    'batchSize: -3 is not allowed (batchSize is a whole number of at least 1); the default is used',
    'useJobTicket: "maybe" is not allowed (useJobTicket is true or false); the default is used',
    'maxWorkers: [1,2] is not allowed (maxWorkers is a whole number); the default is used',
    'deviceType: "tpu" is not allowed (deviceType is one of cpu, gpu); the default is used',
  ])
    t.ok(
      warned.some((l) => l.includes(expected)),
      expected,
    );
  const [described] = (await (await fetch(`${server.urls.management}/models/mnist`)).json()) as Array<{ batchSize: number; responseTimeout: number }>;
  t.match(described, { batchSize: 1, responseTimeout: 30 }, 'the defaults for the bad values, the good ones kept');
});

t.test('register parameters the server cannot use as written are named in a Warning header and the log; the call succeeds, as in TorchServe', async (t) => {
  const log: string[] = [];
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), serverLog: (line) => log.push(line) });
  const query = 'url=mnist.mar&batch_size=dd&max_batch_delay=junk&initial_workers=-1&synchronous=maybe&batchsize=8&response_timeout=0';
  const res = await fetch(`${server.urls.management}/models?${query}`, { method: 'POST' });
  t.equal(res.status, 200, "registered: TorchServe's own tests expect 200 for batch_size=dd");
  const expected = [
    'batch_size="dd" is not a whole number; the default is used',
    'max_batch_delay="junk" is not a whole number; the default is used',
    'initial_workers="-1" is less than 0; 0 is used',
    'synchronous="maybe" is not true or false; false is used',
    'unknown parameter "batchsize" (did you mean batch_size?) is ignored',
    'response_timeout="0" is less than 1; the default is used',
  ];
  const header = res.headers.get('warning') ?? '';
  for (const message of expected) {
    t.ok(header.includes(`299 tsserve "${message.replaceAll('"', "'")}"`), `header: ${message}`);
    t.ok(
      log.some((l) => l.includes(`Register "mnist.mar": ${message}`)),
      `log: ${message}`,
    );
  }
  const [described] = (await (await fetch(`${server.urls.management}/models/mnist`)).json()) as Describe;
  t.match(described, { batchSize: 1, maxBatchDelay: 100, minWorkers: 0 }, 'the defaults are what is used');

  const clean = await fetch(`${server.urls.management}/models?url=mnist.mar&model_name=other&batch_size=2&initial_workers=0`, { method: 'POST' });
  t.equal(clean.status, 200);
  t.equal(clean.headers.get('warning'), null, 'a call with good parameters has no warning');

  const hostile = await fetch(
    `${server.urls.management}/models?url=mnist.mar&model_name=third&initial_workers=0&${encodeURIComponent('a\r\nSet-Cookie: x')}=${encodeURIComponent('\u00e9\n'.repeat(300))}`,
    { method: 'POST' },
  );
  t.equal(hostile.status, 200, 'a parameter name or value with line breaks and non-ASCII text cannot break the answer');
  t.equal(hostile.headers.get('set-cookie'), null);
  t.ok((hostile.headers.get('warning') ?? '').length < 400, 'the warning is cut short');
  t.notOk(
    log.some((l) => l.includes('\nSet-Cookie')),
    'nor forge a log line',
  );
});

t.test('scale parameters the server cannot use as written are warned of as register does: min_worker=abc scales to the default', async (t) => {
  const log: string[] = [];
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), serverLog: (line) => log.push(line) });
  t.equal((await fetch(`${server.urls.management}/models?url=mnist.mar&initial_workers=0`, { method: 'POST' })).status, 200);
  const res = await fetch(`${server.urls.management}/models/mnist?min_worker=abc&synchronous=true&minworker=2`, { method: 'PUT' });
  t.equal(res.status, 200, 'scaled, as TorchServe does');
  t.equal(await res.text(), `{\n  "status": "Workers scaled to 1 for model: mnist"\n}\n`, 'to the default, 1');
  const header = res.headers.get('warning') ?? '';
  for (const message of [
    'min_worker="abc" is not a whole number; the default is used',
    'unknown parameter "minworker" (did you mean min_worker?) is ignored',
  ]) {
    t.ok(header.includes(`299 tsserve "${message.replaceAll('"', "'")}"`), `header: ${message}`);
    t.ok(
      log.some((l) => l.includes(`Scale "mnist": ${message}`)),
      `log: ${message}`,
    );
  }
  const clean = await fetch(`${server.urls.management}/models/mnist/1.0?min_worker=1&max_worker=1&synchronous=true`, { method: 'PUT' });
  t.equal(clean.status, 200);
  t.equal(clean.headers.get('warning'), null, 'a call with good parameters has no warning');
});

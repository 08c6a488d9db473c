// Workers seen from both ends: their environment (variables, threads, niceness, malloc), streaming,
// size limits, warm-up. Batching and a full queue on a real connection are test/batches.test.ts's;
// faults are test/faults/worker-faults.test.ts's; admission itself (a full queue, job tickets,
// queue deadlines) is test/unit/admission.test.ts's, in process.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, getPriority } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { describe, predict, register, serve } from './echo-model.js';
import { buildMar, metric, errorBody, FIXTURES, sharedServer, startTestServer, type TestServer, waitFor } from './helpers.js';

/**
 * A server with every default and echo.mar loaded with two workers, for the tests that only ask
 * workers started by default what they were given (malloc, threads, niceness, streaming): a
 * worker started is most of such a test's cost.
 */
const plain = sharedServer(async (t) => {
  const server = await serve(t, { load_models: 'echo.mar', default_workers_per_model: '2' });
  await waitFor(async () => (await describe(server, 'echo')).workers.filter((w) => w.status === 'READY').length === 2, 30_000, 'two echo workers');
  return server;
});

t.test("blacklist_env_vars keeps matching variables out of the workers' environment", async (t) => {
  process.env.TSSERVE_TEST_SECRET = 'hunter2';
  process.env.TSSERVE_TEST_PUBLIC = 'visible';
  t.teardown(() => {
    delete process.env.TSSERVE_TEST_SECRET;
    delete process.env.TSSERVE_TEST_PUBLIC;
  });
  const server = await serve(t, { blacklist_env_vars: 'TSSERVE_TEST_S.*' });
  await register(t, server, 'env', { initial_workers: 1 });
  t.equal(await (await predict(server, 'env', 'env:TSSERVE_TEST_SECRET')).text(), 'null', 'a blacklisted variable is not there');
  t.equal(await (await predict(server, 'env', 'env:TSSERVE_TEST_PUBLIC')).text(), 'visible', 'the others are');
});

t.test("onnxruntime's telemetry switch reaches every worker, whatever the server's environment says", async (t) => {
  const before = process.env.ORT_DISABLE_TELEMETRY;
  process.env.ORT_DISABLE_TELEMETRY = '0';
  t.teardown(() => {
    if (before === undefined) delete process.env.ORT_DISABLE_TELEMETRY;
    else process.env.ORT_DISABLE_TELEMETRY = before;
  });
  const server = await serve(t, { blacklist_env_vars: 'ORT_.*' });
  await register(t, server, 'env', { initial_workers: 1 });
  t.equal(
    await (await predict(server, 'env', 'env:ORT_DISABLE_TELEMETRY')).text(),
    '1',
    'set, neither overridden nor blacklisted (docs/deploy.md, "No telemetry")',
  );
});

t.test("workers run with glibc malloc's mmap threshold fixed, unless the operator set malloc's tunables", async (t) => {
  const threshold = async (server: TestServer, model: string): Promise<string> => (await predict(server, model, 'env:MALLOC_MMAP_THRESHOLD_')).text();
  t.equal(await threshold(await plain(), 'echo'), '131072', "by default, glibc's starting threshold, which then stays");
  process.env.MALLOC_MMAP_THRESHOLD_ = '65536';
  t.teardown(() => {
    delete process.env.MALLOC_MMAP_THRESHOLD_;
  });
  const tuned = await serve(t);
  await register(t, tuned, 'malloc', { initial_workers: 1 });
  t.equal(await threshold(tuned, 'malloc'), '65536', "the operator's own is kept");
});

t.test('initial_worker_port: the number the first worker is named by, counting up', async (t) => {
  const server = await serve(t, { initial_worker_port: '9400' });
  await register(t, server, 'echo', { initial_workers: 2 });
  const [described] = (await (await fetch(`${server.urls.management}/models/echo`)).json()) as Array<{ workers: Array<{ id: string }> }>;
  t.same(described!.workers.map((w) => w.id).sort(), ['9400', '9401']);
});

t.test('adaptiveThreads: a lone batch may use every core, batches side by side keep to their share', async (t) => {
  const cores = cpus().length;
  const share = Math.max(1, Math.floor(cores / 2));
  const server = await serve(t, {}, 'minWorkers: 2\nmaxWorkers: 2\nadaptiveThreads: true\n');
  await register(t, server, 'adaptive', {});
  const threads = async (res: Promise<Response>): Promise<unknown> => (await res).json();
  t.equal(await threads(predict(server, 'adaptive', 'threads:0')), cores, 'alone: every core');

  const first = predict(server, 'adaptive', 'threads:1500');
  await waitFor(async () => (await metric(server, 'ts_inference_requests_total', 'adaptive')) >= 2, 10_000, 'the first request running');
  t.equal(await threads(predict(server, 'adaptive', 'threads:0')), share, 'beside a running batch: its share');
  t.equal(await threads(first), cores, 'the first one started alone');
  t.equal(await threads(predict(server, 'adaptive', 'threads:0')), cores, 'alone again');
});

t.test('without adaptiveThreads a batch keeps to its share of the cores, alone or not', async (t) => {
  const server = await plain();
  const answer = async (body: string): Promise<unknown> => (await predict(server, 'echo', body)).json();
  t.equal(await answer('threads:0'), Math.max(1, Math.floor(cpus().length / 2)));
  t.equal(await answer('env:TSSERVE_WIDE_INTRA_OP_THREADS'), null, 'no second session is opened');
});

t.test('worker_nice: workers run that many steps nicer than the server (10 unless set), 0 as its equals', async (t) => {
  const niceOf = async (server: TestServer): Promise<number> => getPriority((await describe(server, 'echo')).workers[0]!.pid);
  const workerNice = async (properties: Record<string, string>): Promise<number> => {
    const server = await serve(t, properties);
    await register(t, server, 'echo', { initial_workers: 1 });
    return niceOf(server);
  };
  const own = getPriority();
  t.equal(await niceOf(await plain()), Math.min(19, own + 10), 'by default, 10 steps nicer');
  t.equal(await workerNice({ worker_nice: '19' }), 19, 'at most 19');
  t.equal(await workerNice({ worker_nice: '0' }), own, '0: as the server');
});

t.test("a streaming handler's parts arrive in order over one chunked response", async (t) => {
  const res = await predict(await plain(), 'echo', 'stream:3');
  t.equal(res.status, 200);
  t.equal(res.headers.get('transfer-encoding'), 'chunked');
  const reader = res.body!.getReader();
  const chunks: string[] = [];
  for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(Buffer.from(r.value).toString('utf8'));
  t.equal(chunks.join(''), 'part 0\npart 1\npart 2\nlast\n', 'all parts, in order, then the final answer');
  t.ok(chunks.length >= 2, `the parts came as they were sent (${chunks.length} reads)`);
});

t.test('size limits: an answer over max_response_size is a 500; a body over max_request_size a 413 before it is read', async (t) => {
  const server = await serve(t, { max_response_size: '10000', max_request_size: '10000' });
  await register(t, server, 'sized', { initial_workers: 1 });
  t.equal((await predict(server, 'sized', 'big:9000')).status, 200, 'under the limit');
  const big = await predict(server, 'sized', 'big:20000');
  t.equal(big.status, 500);
  t.match(await errorBody(big), { code: 500, type: 'InternalServerException', message: /max_response_size/ });

  // Announce 50 MB, send 1 KB, and keep the request open: the 413 must come without the rest.
  const { hostname, port } = new URL(server.urls.inference);
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ hostname, port, method: 'POST', path: '/predictions/sized', headers: { 'content-length': 50_000_000 } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write(Buffer.alloc(1024));
    setTimeout(() => req.destroy(), 20_000).unref();
  });
  t.equal(answer.status, 413, 'refused on the announced length, 49.99 MB never sent');
  t.match(JSON.parse(answer.body), { code: 413, type: 'RequestEntityTooLargeException' });
  t.equal((await predict(server, 'sized', 'after')).status, 200, 'the server goes on');
});

t.test(
  "model-config.yaml's warmupFile runs through the handler before the worker is READY: alone, then as the largest batch until the handler's code is warm; a bad sample is said and the worker serves",
  async (t) => {
    const server = await startTestServer(t, {
      prepare: (store) => {
        const files = join(store, '..');
        const sample = (name: string, text: string): string => {
          writeFileSync(join(files, name), text);
          return join(files, name);
        };
        const yaml = (name: string, warmupFile: string): string => sample(`${name}.yaml`, `warmupFile: ${warmupFile}\n`);
        const echo = join(FIXTURES, 'echo_handler.ts');
        buildMar(store, {
          modelName: 'warm',
          version: '1.0',
          handler: echo,
          configFile: yaml('warm', 'sample.txt'),
          extraFiles: sample('sample.txt', 'print'),
        });
        buildMar(store, { modelName: 'outside', version: '1.0', handler: echo, configFile: yaml('outside', '../../../etc/hostname') });
        buildMar(store, {
          modelName: 'refused',
          version: '1.0',
          handler: echo,
          configFile: yaml('refused', 'bad.txt'),
          extraFiles: sample('bad.txt', 'throw'),
        });
      },
    });
    const modelLog = join(server.dir, 'logs', 'model_log.log');
    const logged = async (text: string): Promise<void> => waitFor(() => existsSync(modelLog) && readFileSync(modelLog, 'utf8').includes(text), 10_000, text);

    await register(t, server, 'warm', { url: 'warm.mar', initial_workers: 1, batch_size: 4 });
    await logged('Warm-up of model warm with sample.txt');
    const log = readFileSync(modelLog, 'utf8');
    const batches = Number(/Warm-up of model warm with sample.txt: (\d+) batches in \d+ ms/.exec(log)?.[1]);
    t.ok(batches > 2 && batches <= 400, `the largest batch again and again, up to 400 times or a second: ${batches} batches`);
    t.equal(log.split('echo handler was asked to print').length - 1, batches, 'each through the handler');
    t.ok(log.indexOf('echo handler was asked to print') < log.indexOf('Warm-up of model warm'), 'before the worker reported loaded');

    await register(t, server, 'outside', { url: 'outside.mar', initial_workers: 1 });
    await logged('Warm-up skipped for model outside: warmupFile "../../../etc/hostname" is not a file in the archive');
    await register(t, server, 'refused', { url: 'refused.mar', initial_workers: 1 });
    await logged('Warm-up failed for model refused with bad.txt: boom');
    for (const model of ['warm', 'outside', 'refused']) t.equal((await predict(server, model, 'hello')).status, 200, `${model} serves`);
  },
);

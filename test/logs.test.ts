// The log files are read back as bytes, after the server has closed them: one access line per
// answered request, and what a handler prints, in model_log.log.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { FIXTURES, buildMar, buildMnistMar, startTestServer, waitFor, waitReady } from './helpers.js';

t.test('access_log.log has a line per request and model_log.log what the handler printed', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    properties: { load_models: 'echo.mar' },
  });
  await waitReady(server.urls.management, 'echo');
  t.equal((await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'print' })).status, 200);
  t.equal((await fetch(`${server.urls.inference}/predictions/missing`, { method: 'POST', body: 'x' })).status, 404);
  await server.close();

  const access = readFileSync(join(server.dir, 'logs', 'access_log.log'), 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l.includes('/predictions/'));
  t.match(
    access,
    [
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3} - \/127\.0\.0\.1:\d+ "POST \/predictions\/echo HTTP\/1\.1" 200 \d+$/,
      /"POST \/predictions\/missing HTTP\/1\.1" 404 \d+$/,
    ],
    'one line per answered request, in order',
  );
  t.equal(access.length, 2);

  const model = readFileSync(join(server.dir, 'logs', 'model_log.log'), 'utf8');
  t.match(model, /\[INFO \] W-\S+-stdout MODEL_LOG - echo handler was asked to print$/m);
});

t.test('a running server writes its access lines within a second or so, not only when 4 KB pile up or it stops', async (t) => {
  const server = await startTestServer(t);
  const file = join(server.dir, 'logs', 'access_log.log');
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200);
  await waitFor(() => readFileSync(file, 'utf8').includes('"GET /ping HTTP/1.1" 200'), 10_000, 'the /ping line on disk');
  t.pass('the line is on disk while the server runs');
});

t.test("a client's 4xx is one log line; a handler's failure keeps its stack", async (t) => {
  const lines: string[] = [];
  const server = await startTestServer(t, {
    prepare: (store) => buildMnistMar(store),
    properties: { load_models: 'mnist.mar' },
    serverLog: (line) => lines.push(line),
  });
  await waitReady(server.urls.management, 'mnist');
  t.equal((await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: 'not an image' })).status, 400);
  await waitFor(() => lines.some((l) => l.includes('Prediction refused for model mnist: 400')), 10_000, 'the refusal logged');
  await server.close();
  const worker = lines.filter((l) => /\] W-\S+ tsserve - /.test(l));
  t.equal(worker.length, 1, `one line from the worker: ${worker.join('\n')}`);
  t.notOk(
    worker.some((l) => /\bat \S+ \(/.test(l)),
    'no stack',
  );
});

t.test('the server log: log4j-style text lines by default, as TorchServe writes them; JSON lines with log_format=json', async (t) => {
  for (const format of ['text', 'json'] as const) {
    const lines: string[] = [];
    const server = await startTestServer(t, {
      prepare: (store) => buildMnistMar(store),
      properties: { load_models: 'mnist.mar', ...(format === 'json' ? { log_format: 'json' } : {}) },
      serverLog: (line) => lines.push(line),
      level: 'info',
    });
    await waitReady(server.urls.management, 'mnist');
    await server.close();
    const loaded = lines.find((l) => l.includes('State change STARTED -> MODEL_LOADED'));
    if (format === 'text') {
      t.match(loaded, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3} \[INFO \] main tsserve - W-\d+-mnist_1\.0 State change STARTED -> MODEL_LOADED\n$/, 'text');
    } else {
      t.match(JSON.parse(loaded!), { level: 30, msg: /W-\d+-mnist_1\.0 State change STARTED -> MODEL_LOADED/ }, 'json');
    }
  }
});

// Stopping loses nothing: SIGTERM to a foreground `tsserve` and DELETE /models/{m} both stop
// taking new work, answer every request already accepted, and only then let go of the workers.
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, FIXTURES, metric, ROOT, startTestServer, tempDir, waitFor, waitReady, writeUserConfig } from './helpers.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');

async function pending(management: string, model: string): Promise<number> {
  const [d] = (await (await fetch(`${management}/models/${model}`)).json()) as Array<{ jobQueueStatus: { pendingRequests: number } }>;
  return d!.jobQueueStatus.pendingRequests;
}

/** `tsserve --start --foreground` serving the echo model with one worker, as a child process killed at the test's end. */
async function foregroundServer(t: Test): Promise<{ child: ChildProcess; exited: Promise<number | null>; urls: { inference: string; management: string } }> {
  const dir = tempDir(t);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
  const urls = await writeUserConfig(dir, ['default_workers_per_model=1']);
  const child = spawn(
    process.execPath,
    [TSSERVE, '--start', '--foreground', '--ncs', '--model-store', 'model-store', '--models', 'echo=echo.mar', '--disable-token-auth'],
    {
      cwd: dir,
      env: { ...process.env, TMPDIR: dir },
      stdio: 'ignore',
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => child.kill('SIGKILL'));
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up');
  await waitReady(urls.management, 'echo');
  return { child, exited, urls };
}

t.test('SIGTERM with requests in flight: all of them answered, then the process exits 0', async (t) => {
  const { child, exited, urls } = await foregroundServer(t);
  const management = urls.management;

  // One worker, batch size 1: one request runs, three wait in the queue. Each answer takes 1.5 s so
  // that three stay queued while the poll below looks (with 300 ms a loaded npm test saw the first
  // answered between polls, 14:54 on 2026-12-07).
  const inFlight = Array.from({ length: 4 }, (_, i) =>
    fetch(`${urls.inference}/predictions/echo`, { method: 'POST', body: 'sleep:1500', signal: AbortSignal.timeout(60_000) }).then(async (r) => ({
      status: r.status,
      connection: r.headers.get('connection'),
      body: await r.text(),
      i,
    })),
  );
  await waitFor(async () => (await pending(management, 'echo')) === 3, 10_000, 'three requests queued');
  child.kill('SIGTERM');

  const answers = await Promise.all(inFlight);
  t.same(
    answers.map((a) => a.status),
    [200, 200, 200, 200],
    'the running request and the three queued ones are answered',
  );
  // Kept alive, the client's connections would hold the stop for the 65 s keep-alive timeout.
  t.same(
    answers.map((a) => a.connection),
    ['close', 'close', 'close', 'close'],
    'each answer closes its connection',
  );
  t.equal(await exited, 0, 'then the server exits 0');
  await t.rejects(fetch(`${urls.inference}/ping`), 'and no longer listens');
});

t.test('SIGTERM while an accepted upload is still arriving: it reaches its model and is answered', async (t) => {
  const { child, exited, urls } = await foregroundServer(t);
  const { hostname, port } = new URL(urls.inference);
  const body = Buffer.from('an upload in ten pieces');
  const answer = new Promise<{ status?: number; text: string }>((resolve) => {
    const req = request({ hostname, port, path: '/predictions/echo', method: 'POST', headers: { 'content-length': body.length } }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', (err) => resolve({ text: String(err) }));
    for (let i = 0; i < 10; i++) setTimeout(() => req.write(body.subarray(i * 3, i * 3 + 3)), i * 100);
    setTimeout(() => req.end(), 1000);
  });
  await new Promise((r) => setTimeout(r, 300));
  child.kill('SIGTERM');
  const { status, text } = await answer;
  t.equal(status, 200, `answered, not refused for want of a worker: ${text}`);
  t.match(JSON.parse(text), { params: { body: { kind: 'bytes', value: body.length } } }, 'with its whole body');
  t.equal(await exited, 0, 'then the server exits 0');
});

t.test('unregister drains: requests queued for the model are answered before its workers go', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    properties: { load_models: 'echo.mar' },
  });
  await waitReady(server.urls.management, 'echo');
  // Each answer takes 1 s, so that two stay queued while the poll below looks (with 200 ms the
  // first was answered between two polls of a loaded CI run, and two were never seen queued).
  const inFlight = Array.from({ length: 3 }, () =>
    fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'sleep:1000', signal: AbortSignal.timeout(60_000) }),
  );
  await waitFor(async () => (await pending(server.urls.management, 'echo')) === 2, 10_000, 'two requests queued');
  const unregister = await fetch(`${server.urls.management}/models/echo`, { method: 'DELETE' });
  t.equal(unregister.status, 200);
  t.same(
    (await Promise.all(inFlight)).map((r) => r.status),
    [200, 200, 200],
    'everything accepted before the DELETE is served',
  );
  t.equal((await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'x' })).status, 404, 'new requests find no model');
});

t.test('a drain that outlasts unregister_model_timeout still answers every request, with 5xx JSON', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    properties: { load_models: 'echo.mar', unregister_model_timeout: '1' },
  });
  await waitReady(server.urls.management, 'echo');
  const hung = fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'hang', signal: AbortSignal.timeout(20_000) });
  await waitFor(
    async () => /^ts_batch_size_count\{model_name="echo",.* 1\.0$/m.test(await (await fetch(`${server.urls.metrics}/metrics`)).text()),
    10_000,
    'the hanging request is in the worker',
  );
  const queued = fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'x', signal: AbortSignal.timeout(20_000) });
  await waitFor(async () => (await pending(server.urls.management, 'echo')) === 1, 10_000, 'one request queued');
  t.equal((await fetch(`${server.urls.management}/models/echo`, { method: 'DELETE' })).status, 200);
  const [h, q] = await Promise.all([hung, queued]);
  t.equal(h.status, 500, 'the batch in the killed worker: Worker died.');
  t.match(await h.json(), { code: 500, message: 'Worker died.' });
  t.equal(q.status, 503, 'the queued request: the model stopped');
  t.match(await q.json(), { code: 503, type: 'ServiceUnavailableException', message: /^Model "echo" stopped before it could serve this request/ });
});

t.test('a stop is not held by a client stalled mid-header: nothing accepted, its connection ends with the last answer (review-7 F3)', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    properties: { load_models: 'echo.mar', drain_timeout: '30' },
  });
  await waitReady(server.urls.management, 'echo');
  const { hostname, port } = new URL(server.urls.inference);
  const stalled = connect(Number(port), hostname);
  stalled.on('error', () => undefined);
  const stalledClosed = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
  await new Promise((resolve) => stalled.once('connect', resolve));
  stalled.write('GET /ping HTTP/1.1\r\nHost: x\r\n');
  // One request in flight when the stop begins: it is answered, then the stop ends.
  const inFlight = fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'sleep:500' });
  await waitFor(async () => (await metric(server, 'ts_inference_requests_total', 'echo')) >= 1, 5000, 'the prediction accepted');
  const began = performance.now();
  let bound: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([server.close().then(() => true), new Promise<boolean>((resolve) => (bound = setTimeout(() => resolve(false), 15_000)))]);
  clearTimeout(bound);
  t.ok(stopped, `the stop ended (${Math.round(performance.now() - began)} ms), not held for drain_timeout (30 s)`);
  t.equal((await inFlight).status, 200, 'the request in flight was answered');
  await stalledClosed;
  t.pass("the stalled client's connection ended");
});

// tsserve-app's answers to uploads it cannot forward (review finding F7): a chunked upload over
// its limit, which announces no length, is counted as it passes and refused 413 as an announced
// one is; a forward whose tsserve does not answer in time is answered 504, saying so, rather
// than held until tsserve's own timeout and then answered with a misleading 502.
import { request } from 'node:http';
import t, { type Test } from 'tap';
import { createApp } from '../../dist/src/app/app.js';
import { serve } from '../echo-model.js';
import { waitReady, type TestServer } from '../helpers.js';
import { survived } from './survival.js';

const LIMIT = 4 * 1024 * 1024;
const SLICE = Buffer.alloc(64 * 1024, 0x61);

async function startApp(t: Test, server: TestServer, options: { maxUpload?: number; forwardTimeout?: number }): Promise<string> {
  const app = createApp({ inference: server.urls.inference, management: server.urls.management, ...options });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  return url;
}

/** POSTs `total` bytes chunked (no Content-Length), stopping once the answer comes; status 0 if none came. */
function postChunked(url: string, total: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    let answered = false;
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' } }, (res) => {
      answered = true;
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', () => {
      if (!answered) resolve({ status: 0, body: '' });
    });
    let sent = 0;
    const pump = (): void => {
      while (!answered && !req.destroyed) {
        if (sent >= total) return void req.end();
        sent += SLICE.length;
        if (!req.write(SLICE)) return void req.once('drain', pump);
      }
    };
    pump();
  });
}

t.test('a chunked upload over the limit is refused 413, as an announced one is', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar', max_request_size: String(LIMIT) });
  await waitReady(server.urls.management, 'echo');
  const app = await startApp(t, server, { maxUpload: LIMIT });
  const under = await postChunked(`${app}/api/predict/echo`, 1024 * 1024);
  t.equal(under.status, 200, 'a chunked upload under the limit is forwarded');
  const over = await postChunked(`${app}/api/predict/echo`, 20_000_000);
  t.equal(over.status, 413, `20 MB chunked: 413 (${over.body})`);
  t.same(
    JSON.parse(over.body || '{}'),
    { code: 413, type: 'RequestEntityTooLargeException', message: 'The upload is over 4.0 MB; the limit is 4.0 MB.' },
    "the app's refusal",
  );
  const announced = await fetch(`${app}/api/predict/echo`, { method: 'POST', body: Buffer.alloc(20_000_000) });
  t.equal(announced.status, 413, 'the same upload with its Content-Length: 413 too');
  await announced.arrayBuffer();
  await survived(t, server, { models: ['echo'] });
});

t.test('a forward that tsserve does not answer in time is answered 504, saying so', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const hasty = await startApp(t, server, { forwardTimeout: 1 });
  const slow = await fetch(`${hasty}/api/predict/echo`, { method: 'POST', body: 'sleep:4000', signal: AbortSignal.timeout(60_000) });
  t.equal(slow.status, 504, 'a prediction that takes longer than --forward-timeout: 504');
  t.same(
    await slow.json(),
    { code: 504, type: 'GatewayTimeoutException', message: 'The model server did not answer within 1 s (tsserve-app --forward-timeout). Try again later.' },
    'the answer says tsserve did not answer in time',
  );
  // The default bound outlasts the slow prediction still ahead of this one in the model's queue.
  const patient = await startApp(t, server, {});
  const next = await fetch(`${patient}/api/predict/echo`, { method: 'POST', body: 'hello', signal: AbortSignal.timeout(60_000) });
  t.equal(next.status, 200, 'the next prediction is served');
  await next.arrayBuffer();
  await survived(t, server, { models: ['echo'] });
});

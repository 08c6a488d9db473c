// tsserve-app answers every error with one body shape, TorchServe's `{code, type, message}`
// (code the status, type an exception name, message for the user): its own refusals (nothing
// uploaded, an upload over its limit, announced or not, tsserve too slow or gone) and those its
// framework gives (an unknown path, a method a path does not take) alike.
import t from 'tap';
import { createApp } from '../../dist/src/app/app.js';
import { serve } from '../echo-model.js';
import { waitReady } from '../helpers.js';
import { survived } from './survival.js';

const LIMIT = 64 * 1024;

t.test("every error tsserve-app answers is TorchServe's {code, type, message}", async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const app = createApp({ inference: server.urls.inference, management: server.urls.management, maxUpload: LIMIT, forwardTimeout: 1 });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  // tsserve's listener is gone: the app's 502.
  const gone = createApp({ inference: 'http://127.0.0.1:1', management: 'http://127.0.0.1:1' });
  const goneUrl = await gone.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => gone.close());

  const post = (base: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${base}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream', ...headers }, signal: AbortSignal.timeout(30_000) });
  const cases: Array<[string, number, () => Promise<Response>]> = [
    ['nothing uploaded', 400, () => fetch(`${url}/api/predict/echo`, { method: 'POST' })],
    ['an announced upload over the limit', 413, () => post(url, '/api/predict/echo', Buffer.alloc(LIMIT + 1, 0x61))],
    ['tsserve slower than the forward timeout', 504, () => post(url, '/api/predict/echo', 'sleep:3000')],
    ['tsserve not there', 502, () => post(goneUrl, '/api/predict/echo', 'hello')],
    ['an unknown path', 404, () => fetch(`${url}/api/nope`)],
    ['a method the path does not take', 404, () => fetch(`${url}/api/predict/echo`, { method: 'DELETE' })],
  ];
  for (const [what, status, ask] of cases) {
    const res = await ask();
    t.equal(res.status, status, `${what}: ${status}`);
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    t.match(body, { code: status, type: /^[A-Z]\w+Exception$/, message: /\S/ }, `${what}: {code, type, message}`);
    t.same(Object.keys(body as object).sort(), ['code', 'message', 'type'], `${what}: nothing else`);
  }
  await survived(t, server, { models: ['echo'] });
});

// tsserve-app answers every error with one body shape, TorchServe's `{code, type, message}`
// (code the status, type an exception name, message for the user): its own refusals (nothing
// uploaded, an upload over its limit, announced or not, tsserve too slow or gone) and those its
// framework gives (an unknown path, a method a path does not take) alike.
import t from 'tap';
import { createApp } from '../../dist/src/app/app.js';
import { serve } from '../echo-model.js';
import { waitReady } from '../helpers.js';
import { rawRequest } from './raw-request.js';
import { survived } from './survival.js';

const LIMIT = 64 * 1024;

/** Writes `raw` on a connection of its own to `base`; the answer's status and body. */
function sendRaw(base: string, raw: string): Promise<Response> {
  return new Promise((resolve, reject) => {
    const socket = rawRequest(base, raw);
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
      resolve(new Response(answer.slice(answer.indexOf('\r\n\r\n') + 4), { status }));
    });
  });
}

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
    ['a bad %-escape in the path', 400, () => sendRaw(url, 'POST /api/predict/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')],
    ['a model name over the parameter limit', 400, () => post(url, `/api/predict/${'m'.repeat(5000)}`, 'x')],
    ['a Content-Length that is no number', 400, () => sendRaw(url, 'POST /api/predict/echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n')],
    ['headers over their limit', 431, () => sendRaw(url, `GET /api/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'x'.repeat(20_000)}\r\n\r\n`)],
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

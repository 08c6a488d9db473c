// Pipelined requests behind an answer that closes its connection (a 400 sent before its body was
// read, `Connection: close`): HTTP/1.1 lets no answer follow it, so the server ends them
// unanswered. Each still gets its one access line (TorchServe's access_log.log: one a request),
// saying the server closed them, not that their client left, whatever route it took: a route's,
// the router's refusal of a bad %-escape, a raw refusal of a model with no worker (review F4).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { register, serve } from '../echo-model.js';
import { type TestServer, waitFor, waitReady } from '../helpers.js';
import { exchange } from './raw-request.js';
import { survived } from './survival.js';

const accessLines = (server: TestServer, port: number): string[] => {
  try {
    return readFileSync(join(server.dir, 'logs', 'access_log.log'), 'latin1')
      .split('\n')
      .filter((l) => l.includes(`:${port} `));
  } catch {
    return [];
  }
};

t.test('requests pipelined behind an answer that closes the connection: one line each, `closed`, not `aborted` nor none', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  await register(t, server, 'idle', { initial_workers: 0 });
  const requests = [
    // Answered after 300 ms: what comes behind it is all read (parsed, routed, queued) by the time
    // the 400 after it goes out and closes the connection. Without it, a busy machine's 400 could
    // go before the rest was read, and bytes never read make no request to log.
    'POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nsleep:300',
    // multipart/form-data without a boundary: a 400 before the body is read, which closes the connection.
    'POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\nContent-Length: 5\r\n\r\nhello',
    'GET /ping HTTP/1.1\r\nHost: x\r\n\r\n',
    'POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
    'POST /predictions/idle HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx',
    'GET /predictions/%zz HTTP/1.1\r\nHost: x\r\n\r\n',
  ];
  const { text, port } = await exchange(server.urls.inference, requests.join(''));
  t.same(text.match(/HTTP\/1\.1 \d{3} /g), ['HTTP/1.1 200 ', 'HTTP/1.1 400 '], 'the slow one and the 400 alone are answered');
  t.match(text, /connection: close/i, 'and it closes the connection');
  await waitFor(() => accessLines(server, port).length >= requests.length, 5000, 'a line per request').catch(() => undefined);
  const logged = accessLines(server, port).map((l) => /"(\S+ \S+) HTTP\/1\.1" (\S+)/.exec(l)?.slice(1, 3).join(' '));
  t.same(logged.slice(0, 2), ['POST /predictions/echo 200', 'POST /predictions/echo 400'], 'the answered ones first, with their statuses');
  t.same(
    [...logged.slice(2)].sort(),
    ['GET /ping closed', 'GET /predictions/%zz closed', 'POST /predictions/echo closed', 'POST /predictions/idle closed'].sort(),
    `each request behind it: one line, closed by the server: ${JSON.stringify(logged)}`,
  );
  await survived(t, server, { models: ['echo', 'idle'] });
});

t.test('a request the parser refuses behind ones it read: those are answered first, in order, then its 400 closes the connection', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const requests = [
    // Still running when the parser fails on the third: its answer must go out before the 400.
    'POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nsleep:300',
    'GET /ping HTTP/1.1\r\nHost: x\r\n\r\n',
    'POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nhello',
  ];
  const { text, port } = await exchange(server.urls.inference, requests.join(''));
  t.same(text.match(/HTTP\/1\.1 \d{3} /g), ['HTTP/1.1 200 ', 'HTTP/1.1 200 ', 'HTTP/1.1 400 '], 'the two read before it answered, then the 400');
  t.match(text, /"status": "Healthy"[\s\S]*HTTP\/1\.1 400 [\s\S]*Invalid character in Content-Length/, "each answer in its request's place");
  await waitFor(() => accessLines(server, port).length >= requests.length, 5000, 'a line per request').catch(() => undefined);
  const logged = accessLines(server, port).map((l) => /"(\S+ \S+) HTTP\/1\.1" (\S+)/.exec(l)?.slice(1, 3).join(' '));
  t.same(
    logged,
    ['POST /predictions/echo 200', 'GET /ping 200', 'POST /predictions/echo 400'],
    `one line each, in order, the 400 the malformed request's: ${JSON.stringify(logged)}`,
  );
  await survived(t, server, { models: ['echo'] });
});

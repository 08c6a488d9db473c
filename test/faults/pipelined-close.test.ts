// Pipelined requests behind an answer that closes its connection (a 400 sent before its body was
// read, `Connection: close`): HTTP/1.1 lets no answer follow it, so the server ends them
// unanswered. Each still gets its one access line (TorchServe's access_log.log: one a request),
// saying the server closed them, not that their client left, whatever route it took: a route's,
// the router's refusal of a bad %-escape, a raw refusal of a model with no worker (review F4).
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { register, serve } from '../echo-model.js';
import { metric, type TestServer, waitFor, waitReady } from '../helpers.js';
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

t.test('a refused request pipelined after a body: its line names it, not the request before it (review-7 F4)', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  // The body ends with no line end of its own: the refused request's line starts mid-line.
  const requests = [
    'POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nsleep:300',
    'GET /ping HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n',
  ];
  const { text, port } = await exchange(server.urls.inference, requests.join(''));
  t.same(text.match(/HTTP\/1\.1 \d{3} /g), ['HTTP/1.1 200 ', 'HTTP/1.1 400 '], 'the prediction answered, then the 400');
  await waitFor(() => accessLines(server, port).length >= requests.length, 5000, 'a line per request').catch(() => undefined);
  const logged = accessLines(server, port).map((l) => /"(\S+ \S+) HTTP\/1\.1" (\S+)/.exec(l)?.slice(1, 3).join(' '));
  t.same(logged, ['POST /predictions/echo 200', 'GET /ping 400'], `each its own line: ${JSON.stringify(logged)}`);
  await survived(t, server, { models: ['echo'] });
});

t.test('a refused request whose client leaves while the answers ahead of it run: no 400, one line `aborted` (review-7 F5)', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const { hostname, port: serverPort } = new URL(server.urls.inference);
  const socket = connect(Number(serverPort), hostname);
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  const port = socket.localPort!;
  socket.write(
    'POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nsleep:500POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nhello',
  );
  await waitFor(async () => (await metric(server, 'ts_inference_requests_total', 'echo')) >= 1, 5000, 'the prediction accepted').catch(() => undefined);
  socket.resetAndDestroy();
  await waitFor(() => accessLines(server, port).length >= 2, 5000, 'a line per request').catch(() => undefined);
  const logged = accessLines(server, port).map((l) => /"(\S+ \S+) HTTP\/1\.1" (\S+)/.exec(l)?.slice(1, 3).join(' '));
  t.same(logged, ['POST /predictions/echo aborted', 'POST /predictions/echo aborted'], `both: their client left: ${JSON.stringify(logged)}`);
  await survived(t, server, { models: ['echo'] });
});

t.test('what a client sends after a refused request, while the answers ahead of it run, is read within lingering close bound (review-7 F1)', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const { hostname, port } = new URL(server.urls.inference);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise((resolve) => socket.once('connect', resolve));
  // A slow answer ahead (3 s), then a request the parser refuses, then garbage as fast as it goes:
  // up to 160 MB, more than twice the 64 MB a lingering close reads (it was read without end).
  socket.write('POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nsleep:3000POST /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n');
  const chunk = Buffer.alloc(1024 * 1024, 0x78);
  let sent = 0;
  let gone = false;
  void closed.then(() => (gone = true));
  while (!gone && sent < 160 * chunk.length) {
    sent += chunk.length;
    if (!socket.write(chunk)) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closed]);
  }
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
  t.ok(gone, `the server cut the connection, after ${sent / chunk.length} MB sent`);
  t.ok(sent < 100 * chunk.length, `before 100 MB were sent: ${sent / chunk.length} MB`);
  await survived(t, server, { models: ['echo'] });
});

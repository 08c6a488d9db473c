// An answer given before its request's body was read (a 413 on the declared or the counted length,
// a parser's 400, a refusal's 503 on a connection the client asked to close) must reach a client
// that is still writing that body. Closed with the body unread, the connection is reset by the
// kernel, and a client that reads only once its writes are done lost the answer: each case here
// is such a client, and each failed so before the server closed such connections lingering; so
// did the 403 an HTTPS listener gives plain HTTP.
import { connect } from 'node:net';
import t from 'tap';
import { register, serve } from '../echo-model.js';
import { waitReady } from '../helpers.js';
import { survived } from './survival.js';

const LIMIT = 4 * 1024 * 1024;
const BODY = 24 * 1024 * 1024;
const SLICE = Buffer.alloc(64 * 1024, 0x61);

/** `total` bytes of SLICE, as they are or as HTTP chunks. */
function* body(total: number, chunked: boolean): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += SLICE.length) {
    yield chunked ? Buffer.concat([Buffer.from(`${SLICE.length.toString(16)}\r\n`), SLICE, Buffer.from('\r\n')]) : SLICE;
  }
  if (chunked) yield Buffer.from('0\r\n\r\n');
}

/**
 * Writes `head` and the whole body as fast as the connection takes it, reading nothing meanwhile
 * (the socket is paused), then reads what the server answered; '' when the connection failed
 * first. At most 30 s.
 */
function writeAllThenRead(url: string, head: string, chunks: Iterable<Buffer>): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    socket.pause();
    socket.setTimeout(30_000, () => socket.destroy());
    let answer = '';
    socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(answer));
    socket.on('connect', () => {
      socket.write(head);
      const source = chunks[Symbol.iterator]();
      const pump = (): void => {
        for (let next = source.next(); !socket.destroyed; next = source.next()) {
          if (next.done) return void socket.resume();
          if (!socket.write(next.value)) return void socket.once('drain', pump);
        }
      };
      pump();
    });
  });
}

const POST = (path: string, headers: string): string => `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n${headers}\r\n`;

t.test('an answer sent before the body was read reaches a client that reads only after writing it all', async (t) => {
  const server = await serve(t, { max_request_size: String(LIMIT), load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  await register(t, server, 'idle', { initial_workers: 0 });
  const cases: Array<[string, string, () => Iterable<Buffer>, RegExp]> = [
    [
      'a body declared over max_request_size',
      POST('/predictions/echo', `Content-Length: ${BODY}\r\n`),
      () => body(BODY, false),
      /^HTTP\/1\.1 413 [\s\S]*"code": 413/,
    ],
    [
      'a chunked body counted over max_request_size',
      POST('/predictions/echo', 'Transfer-Encoding: chunked\r\n'),
      () => body(BODY, true),
      /^HTTP\/1\.1 413 [\s\S]*"code": 413/,
    ],
    [
      'a Content-Length the parser refuses',
      POST('/predictions/echo', 'Content-Length: 12abc\r\n'),
      () => body(BODY, false),
      /^HTTP\/1\.1 400 [\s\S]*"code": 400/,
    ],
    [
      "a refusal before the router, the client's connection to close",
      POST('/predictions/idle', 'Transfer-Encoding: chunked\r\nConnection: close\r\n'),
      () => body(BODY, true),
      /^HTTP\/1\.1 503 [\s\S]*"code": 503/,
    ],
    [
      "a refusal in a route's hook, the client's connection to close",
      POST('/models/idle/invoke', 'Transfer-Encoding: chunked\r\nConnection: close\r\n'),
      () => body(BODY, true),
      /^HTTP\/1\.1 503 [\s\S]*"code": 503/,
    ],
  ];
  let sent = 0;
  let answered = 0;
  for (const [what, head, chunks, expected] of cases) {
    sent++;
    const answer = await writeAllThenRead(server.urls.inference, head, chunks());
    if (answer !== '') answered++;
    t.match(answer, expected, `${what}: the answer arrives (${JSON.stringify(answer.slice(0, 40))})`);
  }
  await survived(t, server, { models: ['echo', 'idle'], sent, answered });
});

t.test('plain HTTP to an HTTPS listener: its 403 reaches a client still writing its body', async (t) => {
  const server = await serve(t, { inference_address: 'https://127.0.0.1:0', load_models: 'echo.mar' });
  const plain = server.urls.inference.replace('https:', 'http:');
  const answer = await writeAllThenRead(plain, POST('/predictions/echo', `Content-Length: ${BODY}\r\n`), body(BODY, false));
  t.match(answer, /^HTTP\/1\.1 403 [\s\S]*only accepts HTTPS/, `the 403 arrives (${JSON.stringify(answer.slice(0, 40))})`);
  // survived() pings over fetch, which would refuse the listener's self-signed certificate.
  const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  try {
    await survived(t, server, { models: ['echo'], sent: 1, answered: answer === '' ? 0 : 1 });
  } finally {
    if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
  }
});

t.test('a chunked body that never ends after a refusal that keeps the connection: cut after a while', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await register(t, server, 'idle', { initial_workers: 0 });
  const { hostname, port } = new URL(server.urls.inference);
  const socket = connect(Number(port), hostname);
  let answer = '';
  socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
  socket.on('error', () => undefined);
  let bound: NodeJS.Timeout | undefined;
  const closed = new Promise<boolean>((resolve) => {
    socket.once('close', () => resolve(true));
    bound = setTimeout(() => resolve(false), 30_000);
  });
  socket.write(POST('/predictions/idle', 'Transfer-Encoding: chunked\r\n'));
  // A chunk every 10 ms, for at most 30 s: far longer than the server reads a refused body.
  const chunk = Buffer.concat([Buffer.from('400\r\n'), Buffer.alloc(0x400, 0x61), Buffer.from('\r\n')]);
  const writer = setInterval(() => {
    if (!socket.destroyed) socket.write(chunk);
  }, 10);
  const cut = await closed;
  // Left running, the bound kept the file's process 25 s after its last test.
  clearTimeout(bound);
  clearInterval(writer);
  socket.destroy();
  t.match(answer, /^HTTP\/1\.1 503 /, 'the refusal was answered');
  t.ok(cut, 'the server closed the connection while the body still came');
  await survived(t, server, { models: ['echo', 'idle'], sent: 1, answered: answer === '' ? 0 : 1 });
});

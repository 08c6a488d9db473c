// Every answered request has its line in access_log.log, as TorchServe's: also the 400s given
// before any route runs (a bad %-escape, an over-long path segment, a request Node's parser
// refuses, headers over their limit) and those of a body that cannot be parsed (a broken
// multipart body). Each case is sent on a socket of its own, so its line is found by the
// client's port.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { serve } from '../echo-model.js';
import { startTestServer, type TestServer, waitFor, waitReady } from '../helpers.js';
import { rawRequest } from './raw-request.js';
import { survived } from './survival.js';

/** Writes `raw` on a new connection; the status line's code and the client's port. */
function sendRaw(url: string, raw: string): Promise<{ status: number; port: number }> {
  return new Promise((resolve, reject) => {
    const socket = rawRequest(url, raw);
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      // The status line is all this reads: a refused request's connection may stay open.
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1];
      if (status) {
        resolve({ status: Number(status), port: socket.localPort! });
        socket.destroy();
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed without an answer: ${answer.slice(0, 200)}`)));
  });
}

const MULTIPART = 'multipart/form-data; boundary=XyZ';
/** A part that never ends: its headers have no blank line after them, and no closing boundary follows. */
const BROKEN = '--XyZ\r\nbroken-part!';
const CASES: Array<{ what: string; raw: string; status: number }> = [
  { what: 'a bad %-escape in the path', raw: 'GET /predictions/%zz HTTP/1.1\r\nHost: x\r\n\r\n', status: 400 },
  { what: 'a path segment over 1000 characters', raw: `GET /predictions/${'m'.repeat(1200)} HTTP/1.1\r\nHost: x\r\n\r\n`, status: 414 },
  { what: 'a request line Node cannot parse', raw: 'GET /ping HTTP/1.1\r\nBad Header Line\r\n\r\n', status: 400 },
  { what: 'headers over their limit', raw: `GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ${'x'.repeat(100_000)}\r\n\r\n`, status: 431 },
  {
    what: 'a broken multipart body',
    raw: `POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Type: ${MULTIPART}\r\nContent-Length: ${BROKEN.length}\r\n\r\n${BROKEN}`,
    status: 400,
  },
  { what: 'an unknown model', raw: 'GET /models/nope HTTP/1.1\r\nHost: x\r\n\r\n', status: 404 },
];

/** The access log's lines for the client port's answers of `status`. */
function accessLines(server: TestServer, { status, port }: { status: number; port: number }): number {
  let text = '';
  try {
    text = readFileSync(join(server.dir, 'logs', 'access_log.log'), 'utf8');
  } catch {
    /* not written yet */
  }
  return text.match(new RegExp(`/127\\.0\\.0\\.1:${port} ".*" ${status} \\d+\n`, 'g'))?.length ?? 0;
}

t.test('every answered request, refused before routing or not, has its access-log line', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const answered: Array<{ what: string; status: number; port: number }> = [];
  for (const c of CASES) {
    const url = c.raw.includes('/models/') ? server.urls.management : server.urls.inference;
    const res = await sendRaw(url, c.raw);
    t.equal(res.status, c.status, `${c.what}: ${c.status}`);
    answered.push({ what: c.what, ...res });
  }
  await waitFor(() => answered.every((a) => accessLines(server, a) > 0), 5000, 'every access line').catch(() => undefined);
  for (const a of answered) t.equal(accessLines(server, a), 1, `${a.what}: its ${a.status} has one access-log line`);
  await survived(t, server, { models: ['echo'] });
});

t.test("a refused request whose headers came in two reads: its access line never repeats a header (a client's token)", async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const { hostname, port } = new URL(server.urls.inference);
  const token = 'Bearer SECRET-TOKEN-1234';
  const answer = await new Promise<{ status: number; port: number }>((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write('GET /ping HTTP/1.1\r\nHost: x\r\n');
      // The parser refuses the second read, whose first line is a header.
      setTimeout(() => socket.write(`Authorization: ${token}\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`), 200);
    });
    socket.setTimeout(30_000, () => socket.destroy(new Error('no answer in 30 s')));
    socket.on('data', (chunk: Buffer) => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(chunk.toString('latin1'))?.[1];
      if (status) {
        resolve({ status: Number(status), port: socket.localPort! });
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
  t.equal(answer.status, 431, 'headers over their limit: 431');
  await waitFor(() => accessLines(server, answer) > 0, 5000, 'its access line').catch(() => undefined);
  t.equal(accessLines(server, answer), 1, 'the 431 has one access-log line');
  const log = readFileSync(join(server.dir, 'logs', 'access_log.log'), 'utf8');
  t.notMatch(log, 'SECRET-TOKEN', 'the token is nowhere in the access log');
  await survived(t, server, { models: ['echo'] });
});

t.test('plain HTTP to an HTTPS listener: its 403 has an access-log line', async (t) => {
  // The metrics listener: survived() calls the other two with fetch, which refuses a self-signed certificate.
  const server = await startTestServer(t, { properties: { metrics_address: 'https://127.0.0.1:0' } });
  const plain = await sendRaw(server.urls.metrics!.replace('https:', 'http:'), 'GET /ping HTTP/1.1\r\nHost: x\r\n\r\n');
  t.equal(plain.status, 403, 'refused');
  await waitFor(() => accessLines(server, plain) > 0, 5000, 'the access line').catch(() => undefined);
  t.equal(accessLines(server, plain), 1, 'its 403 has one access-log line');
  await survived(t, server);
});

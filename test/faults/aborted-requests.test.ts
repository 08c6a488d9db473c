// A client that goes away mid-body (it half-closes, or resets the connection) was answered
// nothing: its request is logged as aborted, not as a 400 a client sent, and counted in no 4xx
// counter; so is one that goes away after its body was read, before its answer. And `Expect: 100-continue` gets its final answer without the 100 when the request is
// refused before its body is read (RFC 9110 §10.1.1): the client then need not send the body.
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { register, serve } from '../echo-model.js';
import { type TestServer, waitFor, waitReady } from '../helpers.js';
import { survived } from './survival.js';

const accessLog = (server: TestServer): string => {
  try {
    return readFileSync(join(server.dir, 'logs', 'access_log.log'), 'utf8');
  } catch {
    return '';
  }
};

/** The Requests4XX counter (TorchServe's, by response class). */
async function requests4xx(server: TestServer): Promise<number> {
  const text = await (await fetch(`${server.urls.metrics}/metrics`)).text();
  return Number(/^Requests4XX\{[^\n]*\} (\S+)$/m.exec(text)?.[1] ?? 0);
}

function opened(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => resolve(socket));
    socket.on('error', reject);
  });
}

/** What the server writes on `socket` until it has written `until` (or closed it, or 10 s passed). */
function readUntil(socket: Socket, until: RegExp): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const done = (): void => {
      clearTimeout(timer);
      resolve(text);
    };
    const timer = setTimeout(done, 10_000);
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (until.test(text)) done();
    });
    socket.on('close', done);
    socket.on('error', () => undefined);
  });
}

t.test('a client gone mid-body: logged as aborted, in no 4xx count', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const before = await requests4xx(server);
  const ports: number[] = [];
  for (const leave of ['half-closes', 'resets'] as const) {
    const socket = await opened(server.urls.inference);
    ports.push(socket.localPort!);
    socket.write(`POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n${'a'.repeat(1000)}`);
    await new Promise((r) => setTimeout(r, 200));
    if (leave === 'half-closes') socket.end();
    else socket.resetAndDestroy();
    // Read what comes (nothing is expected) so that the server's end of the connection is seen.
    socket.resume();
    await new Promise((r) => socket.once('close', r));
  }
  await waitFor(() => ports.every((p) => accessLog(server).includes(`:${p} `)), 5000, 'the access lines').catch(() => undefined);
  for (const port of ports) {
    const line = accessLog(server)
      .split('\n')
      .find((l) => l.includes(`:${port} `));
    t.match(line, /"POST \/predictions\/echo HTTP\/1\.1" aborted \d+$/, `an aborted request's access line: ${line}`);
  }
  t.equal(await requests4xx(server), before, 'no 4xx counted');
  await survived(t, server, { models: ['echo'] });
});

t.test('a client gone after its body was read, while its prediction waits or runs: logged as aborted, in no count', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const before = await requests4xx(server);
  const socket = await opened(server.urls.inference);
  const port = socket.localPort!;
  const body = 'sleep:1500';
  socket.write(`POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  await new Promise((r) => setTimeout(r, 300));
  socket.resetAndDestroy();
  const line = (): string | undefined =>
    accessLog(server)
      .split('\n')
      .find((l) => l.includes(`:${port} `));
  // Its prediction still runs (1.5 s) and its answer goes nowhere: the line must not wait for it.
  await waitFor(() => line() !== undefined, 5000, 'its access line').catch(() => undefined);
  t.match(line(), /"POST \/predictions\/echo HTTP\/1\.1" aborted \d+$/, `its access line: ${line()}`);
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(
    accessLog(server)
      .split('\n')
      .filter((l) => l.includes(`:${port} `)).length,
    1,
    'one line, not another once its prediction ended',
  );
  t.equal(await requests4xx(server), before, 'no 4xx counted');
  await survived(t, server, { models: ['echo'] });
});

t.test('Expect: 100-continue refused before its body is read: the final answer, no 100', async (t) => {
  const server = await serve(t, { max_request_size: '1000', load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  await register(t, server, 'idle', { initial_workers: 0 });
  const cases: Array<[string, string, RegExp]> = [
    [
      'a body declared over max_request_size',
      'POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n',
      /^HTTP\/1\.1 413 /,
    ],
    ['a refusal before the router', 'POST /predictions/idle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n', /^HTTP\/1\.1 503 /],
    ["a refusal in a route's hook", 'POST /models/idle/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n', /^HTTP\/1\.1 503 /],
  ];
  let sent = 0;
  let answered = 0;
  for (const [what, head, expected] of cases) {
    const socket = await opened(server.urls.inference);
    const answer = readUntil(socket, /\r\n\r\n/);
    socket.write(head);
    sent++;
    const text = await answer;
    if (text !== '') answered++;
    t.match(text, expected, `${what}: ${JSON.stringify(text.slice(0, 30))}`);
    socket.destroy();
  }
  // A request the server takes gets its 100, then, once its body is sent, its answer.
  const socket = await opened(server.urls.inference);
  const interim = readUntil(socket, /\r\n\r\n/);
  socket.write('POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
  sent++;
  t.match(await interim, /^HTTP\/1\.1 100 Continue\r\n\r\n$/, 'a request taken: 100 Continue first');
  const final = readUntil(socket, /\r\n\r\n[\s\S]*\}/);
  socket.write('hello');
  const text = await final;
  if (text !== '') answered++;
  t.match(text, /^HTTP\/1\.1 200 /, 'then its answer');
  socket.destroy();
  await survived(t, server, { models: ['echo', 'idle'], sent, answered });
});

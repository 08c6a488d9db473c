// A request answered before its body was read, whose body came in the headers' packet (most
// refusals past capacity), is held by nothing of lingering-close once the turn of the event loop
// that answered it is over. Until 2026-12-07 a closure on its socket (its destroySoon) held the
// connection's last such request as long as the connection lived, and a refusal flood promoted
// thousands of them to the old generation: page faults and old-space growth the bare server had
// not. The later-body cases (a lingering close, a drain cut short) are test/faults/lingering-close
// and refused-trickle's.
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { setImmediate as turn } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { cutDrains, LINGER_MS, lingerIfBodyUnread } from './lingering-close.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** `count` requests with a body each, one after another on one kept connection; resolves with the connection once all are answered. */
async function answeredOnOneConnection(port: number, count: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  for (let i = 1; i <= count; i++) {
    socket.write(`POST /predictions/m HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello`);
    for (let waits = 0; received.split('HTTP/1.1 503').length - 1 < i; waits++) {
      if (waits > 5000) throw new Error(`answer ${i} did not come`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  return socket;
}

t.test('a request answered with its body unread is not kept once its turn is over, its connection still open', async (t) => {
  const answered: Array<WeakRef<IncomingMessage>> = [];
  const server = createServer((req, res) => {
    answered.push(new WeakRef(req));
    res.writeHead(503, { 'content-length': '2' });
    res.end('no');
    lingerIfBodyUnread(req);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const socket = await answeredOnOneConnection((server.address() as { port: number }).port, 3);
  t.teardown(() => socket.destroy());
  for (let i = 0; i < 3; i++) {
    await turn();
    gc();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  t.equal(answered.length, 3);
  t.same(
    answered.map((r) => r.deref() === undefined),
    [true, true, true],
    'each request collected',
  );
  t.notOk(socket.destroyed, 'the connection is still open');
});

t.test('a stop in the turn a request was answered, its body still coming: its drain is cut at once, not after LINGER_MS', async (t) => {
  const server = createServer((req, res) => {
    res.writeHead(503, { 'content-length': '2' });
    res.end('no');
    lingerIfBodyUnread(req);
    cutDrains(server);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const socket = connect((server.address() as { port: number }).port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  const began = performance.now();
  const ended = new Promise<number>((resolve) => socket.once('end', () => resolve(performance.now() - began)));
  socket.on('data', () => undefined);
  socket.write('POST /predictions/m HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nhello');
  let bound: NodeJS.Timeout | undefined;
  const ms = await Promise.race([ended, new Promise<number>((resolve) => (bound = setTimeout(() => resolve(Number.POSITIVE_INFINITY), LINGER_MS + 2000)))]);
  // Left running, the bound kept the file's process 7 s after its last test.
  clearTimeout(bound);
  t.ok(ms < LINGER_MS, `the connection ended by the stop, after ${Math.round(ms)} ms (a drain left alone ends after ${LINGER_MS})`);
});

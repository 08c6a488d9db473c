// A refusal's 503 goes out before its request's body is read and keeps the connection (the client
// did not ask to close it); Node then reads and throws away the rest of that body for as long as
// it comes. A declared Content-Length up to max_request_size bounded it in bytes but not in time
// (Fastify's requestTimeout is 0): a client trickling 1 KB every 100 ms held the connection for
// minutes, and a stop waited its whole drain_timeout for such connections, none of them work it
// had accepted. Both failed so before the rest of a body after an early answer was bounded in
// time whatever its framing, and a stop stopped counting answered requests as in flight.
import { connect, type Socket } from 'node:net';
import t from 'tap';
import { register, serve } from '../echo-model.js';
import { waitReady } from '../helpers.js';
import { survived } from './survival.js';

const LIMIT = 4 * 1024 * 1024;
const DECLARED = 4_000_000;
const TRICKLE = Buffer.alloc(1024, 0x61);
const TRICKLE_EVERY_MS = 100;
/** Past this the test gives up on a connection: a bound on a hang, not a speed claim. */
const GIVE_UP_MS = 30_000;

interface Trickler {
  /** Resolves once the 503's head arrived. */
  readonly refused: Promise<string>;
  /** Resolves with the ms from the connect to the connection's close (GIVE_UP_MS when it did not). */
  readonly closed: Promise<number>;
  readonly socket: Socket;
}

/**
 * POSTs to `model` with Content-Length DECLARED, then trickles TRICKLE every TRICKLE_EVERY_MS,
 * reading what comes, until the server ends the connection or GIVE_UP_MS passes.
 */
function trickle(url: string, model: string): Trickler {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  const began = performance.now();
  let answer = '';
  let onRefused: (head: string) => void = () => undefined;
  const refused = new Promise<string>((resolve) => (onRefused = resolve));
  socket.on('data', (c: Buffer) => {
    answer += c.toString('latin1');
    if (answer.includes('\r\n\r\n')) onRefused(answer);
  });
  socket.on('error', () => undefined);
  // The body trickles once the head is written: a socket is writable before it connects, and a
  // tick before 'connect' sent body bytes ahead of the request line (a 400, CI on 2026-12-07).
  let ticker: NodeJS.Timeout | undefined;
  const giveUp = setTimeout(() => socket.destroy(), GIVE_UP_MS);
  const closed = new Promise<number>((resolve) =>
    socket.on('close', () => {
      clearInterval(ticker);
      clearTimeout(giveUp);
      onRefused(answer);
      resolve(Math.min(performance.now() - began, GIVE_UP_MS));
    }),
  );
  socket.on('connect', () => {
    socket.write(`POST /predictions/${model} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${DECLARED}\r\n\r\n`);
    ticker = setInterval(() => {
      if (socket.writable) socket.write(TRICKLE);
    }, TRICKLE_EVERY_MS);
  });
  return { refused, closed, socket };
}

function endAll(clients: readonly Trickler[]): void {
  for (const c of clients) c.socket.destroy();
}

t.test('a trickled declared-length body after a kept 503 is cut in bounded time', async (t) => {
  const server = await serve(t, { max_request_size: String(LIMIT), load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  await register(t, server, 'idle', { initial_workers: 0 });
  const clients = Array.from({ length: 3 }, () => trickle(server.urls.inference, 'idle'));
  t.teardown(() => endAll(clients));
  for (const c of clients) {
    const head = await c.refused;
    t.match(head, /^HTTP\/1\.1 503 /, 'refused at once');
    t.notMatch(head, /connection: close/i, 'the 503 keeps the connection');
  }
  const took = await Promise.all(clients.map((c) => c.closed));
  for (const ms of took) t.ok(ms < 15_000, `the connection was ended while the body still trickled (${Math.round(ms)} ms)`);
  await survived(t, server, { models: ['echo', 'idle'], sent: clients.length, answered: clients.length });
});

t.test('a stop does not wait for the bodies of requests it already refused', async (t) => {
  const server = await serve(t, { max_request_size: String(LIMIT), load_models: 'echo.mar', drain_timeout: '60' });
  await waitReady(server.urls.management, 'echo');
  await register(t, server, 'idle', { initial_workers: 0 });
  const clients = Array.from({ length: 5 }, () => trickle(server.urls.inference, 'idle'));
  t.teardown(() => endAll(clients));
  for (const c of clients) t.match(await c.refused, /^HTTP\/1\.1 503 /, 'refused at once');
  await survived(t, server, { models: ['echo', 'idle'], sent: clients.length, answered: clients.length });
  const began = performance.now();
  const stopped = await Promise.race([server.close().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 25_000).unref())]);
  const took = performance.now() - began;
  t.ok(stopped && took < 20_000, `the stop ended well before drain_timeout (60 s) with nothing accepted in flight (${Math.round(took)} ms)`);
  // Whatever the stop did, the clients stop here, so that a stop still waiting on them ends.
  endAll(clients);
});

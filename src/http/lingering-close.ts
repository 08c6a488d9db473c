/**
 * @module http/lingering-close
 * An answer sent before its request's body was read (a 413 on the declared or the counted length,
 * a refusal's 503, a bad key's 400, a parser's 400 or 431, the 403 to plain HTTP on an HTTPS
 * listener) leaves the rest of that body on its way. A connection closed with bytes unread is
 * reset by the kernel (RST), and a client still writing its body loses the answer before it reads
 * it. So such a connection is closed as nginx's lingering_close does: the answer and a FIN go
 * out, what still arrives is read and thrown away, and the socket is closed when the client closes
 * its side, or after LINGER_MS or LINGER_BYTES, whichever comes first. The rest of a body after an
 * answer that keeps the connection (a refusal's 503) is read and discarded for LINGER_MS at most,
 * whatever its framing, and not at all once its listener stops (cutDrains).
 */
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';

/** How long a connection is read and discarded, at most, after its answer. */
export const LINGER_MS = 5000;
/** How much is read and discarded, at most, after an answer. */
export const LINGER_BYTES = 64 * 1024 * 1024;

/**
 * Ends `socket` (its FIN after what was written to it) and reads and discards what still comes
 * until the client ends its side or the bounds pass, then closes it. The HTTP parser gets none of
 * it: Node lets the parser go from the socket's handle once another reader listens for its data.
 */
export function closeLingering(socket: Socket): void {
  if (socket.destroyed) return;
  const close = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  const timer = setTimeout(close, LINGER_MS);
  timer.unref();
  dropIncoming(socket, close);
  socket.once('end', close);
  socket.once('close', () => clearTimeout(timer));
  socket.end();
  socket.resume();
}

/**
 * Reads and throws away what `socket` still sends, the HTTP parser fed none of it (Node lets the
 * parser go from the socket's handle once another reader listens for its data); past LINGER_BYTES,
 * `cut`. Reading on, rather than pausing, keeps a client that writes all before it reads from
 * waiting on a full window while its answers wait on it.
 */
export function dropIncoming(socket: Socket, cut: () => void): void {
  let dropped = 0;
  socket.removeAllListeners('data');
  socket.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_BYTES) cut();
  });
}

/**
 * Connections kept after an early answer, whose requests' bodies Node still reads and throws
 * away: each with what cuts it. A stop ends them (cutDrains) rather than wait for those bodies.
 */
const draining = new Map<Socket, () => void>();

/**
 * When Node closes `request`'s connection after its answer (`Connection: close`, the client's or
 * ours) with the request's body not all read, the close lingers (closeLingering); when it keeps
 * the connection, the rest of the body is bounded in time (boundDrain). Called by every answer
 * that may go out before the body is read. Past capacity that is every refusal, most of whose
 * bodies came in the headers' packet and are read by the end of this turn of the event loop (not
 * yet in a nextTick, which runs between the headers and the body): such a request is only noted
 * until then (boundDrainsOfTurn, an immediate), and nothing outlives the turn that holds it. A
 * closure per request on its socket and a timer each kept a refused request alive past the young
 * generation's collections, and it was promoted: page faults, write barriers and old-space growth
 * a bare server has not (docs/performance.md).
 */
export function lingerIfBodyUnread(request: IncomingMessage): void {
  const socket = request.socket;
  if (!(socket instanceof Socket) || request.complete) return;
  (socket as AnsweredSocket)[unreadRequest] = request;
  // One function for every socket, set once: a closure per answer would hold its request.
  if (socket.destroySoon !== destroySoonLingering) socket.destroySoon = destroySoonLingering;
  if (answeredUnread.push(request) === 1) setImmediate(boundDrainsOfTurn);
}

/** The connection's request whose body was unread when it was answered, while it may still be. */
const unreadRequest = Symbol('unreadRequest');
type AnsweredSocket = Socket & { [unreadRequest]?: IncomingMessage | undefined };

/** Requests answered with their bodies unread in this turn of the event loop. */
let answeredUnread: IncomingMessage[] = [];

/** What Node calls to close a connection once its last answer is out: lingering while its request's body still comes. */
function destroySoonLingering(this: AnsweredSocket): void {
  const request = this[unreadRequest];
  if (request && !request.complete) closeLingering(this);
  else Socket.prototype.destroySoon.call(this);
}

/** The requests answered unread in this turn whose bodies still come are bounded; the others forgotten. */
function boundDrainsOfTurn(): void {
  const requests = answeredUnread;
  answeredUnread = [];
  for (const request of requests) {
    const socket = request.socket as AnsweredSocket;
    if (!request.complete) boundDrain(request, socket);
    else forgetUnread(socket, request);
  }
}

function forgetUnread(socket: AnsweredSocket, request: IncomingMessage): void {
  if (socket[unreadRequest] === request) socket[unreadRequest] = undefined;
}

/**
 * A connection kept after its early answer has the rest of its body read and thrown away by Node
 * as long as it comes: max_request_size bounds a declared length in bytes, not in time (a client
 * may trickle it; Fastify's requestTimeout is 0), and a chunked body has no end of its own. Still
 * coming LINGER_MS after the answer, it is cut: the connection closes lingering.
 */
function boundDrain(request: IncomingMessage, socket: AnsweredSocket): void {
  if (request.complete || draining.has(socket)) return;
  const forget = (): void => {
    clearTimeout(timer);
    draining.delete(socket);
    forgetUnread(socket, request);
  };
  const cut = (): void => {
    forget();
    // A connection already closing (its answer closed it) lingers on its own bounds.
    if (!request.complete && !socket.writableEnded) closeLingering(socket);
  };
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  draining.set(socket, cut);
  request.once('close', forget);
}

/**
 * Cuts now the drains of `server`'s connections (see boundDrain): a stop waits for the requests
 * it accepted, and one already answered is not one of them.
 */
export function cutDrains(server: object): void {
  // Answered in this turn, before the stop: their drains are bounded now, so that they are cut too.
  boundDrainsOfTurn();
  for (const [socket, cut] of draining) if (serverOf(socket) === server) cut();
}

/** The server that accepted `socket` (Node sets it on the sockets of net, http and tls servers). */
function serverOf(socket: Socket): unknown {
  return (socket as Socket & { server?: unknown }).server;
}

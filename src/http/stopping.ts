/**
 * @module http/stopping
 * A REST listener's side of a stop. From the stop's start, a new request is refused with
 * TorchServe's JSON (503, its connection closed) while those in flight go on, and every answer
 * closes its connection. A kept-alive connection idle at the stop's start is not ended at once,
 * as Node's server.close() would: a request its client wrote before it could know of the stop may
 * be on its way, and ended with it unread, the connection was reset and its client could not tell
 * whether its POST ran (review-8 F6). Such a request is read and refused; the connections still
 * idle stop_idle_grace_ms into the stop are ended then. At the drain's end, those still unanswered
 * are answered 503 and every connection is ended, so that no client holds the stop: a body that
 * never finishes arriving, a DELETE waiting out unregister_model_timeout. A request answered
 * before its body was read (a refusal's 503) is not in flight: its connection is ended at the
 * stop's start, not waited for. Nor is a request whose headers never came whole (a client stalled
 * mid-header): once nothing accepted is left in flight, the connections left are ended; one such
 * client held every stop for the whole drain_timeout.
 */
import type { Server } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { tsError } from '../errors.js';
import { cutDrains, lingerIfBodyUnread } from './lingering-close.js';
import { sendError } from './reply.js';

/** What a stop does to one listener: see the module's comment. */
export interface ListenerStop {
  /** Stops accepting; resolves once every request in flight has been answered. */
  close(): Promise<void>;
  /** Answers what is still in flight (503) and ends every connection. */
  cut(): void;
}

/** How long the answers `cut` writes get to leave before their connections are ended. */
const CUT_FLUSH_MS = 500;

/**
 * Installs the stop's hooks on `app` (before its routes) and answers how to stop it. `idleGraceMs`
 * (stop_idle_grace_ms): how long, from the stop's start, a connection idle then is kept for a
 * request on its way, one its client sent as it read its last answer (a closed loop) a round trip
 * and the client's turn later. The default, 200 ms, is far above that on one network, a loaded
 * machine's included, and below CUT_FLUSH_MS, so that a stop with nothing in flight ends no later
 * than one with an answer to wait for. Only a stop with idle connections waits for it.
 */
export function stoppable(app: FastifyInstance, idleGraceMs: number): ListenerStop {
  let stopping = false;
  const inFlight = new Map<FastifyRequest, FastifyReply>();
  /** Settles, once stopping, when the last request in flight is answered. */
  let answeredAll: (() => void) | undefined;
  const answered = (request: FastifyRequest): void => {
    inFlight.delete(request);
    if (inFlight.size === 0) answeredAll?.();
  };
  const stopAnswer = (reply: FastifyReply): FastifyReply => {
    lingerIfBodyUnread(reply.request.raw);
    return sendError(reply.header('connection', 'close'), tsError('TSS_ERR_SERVER_STOPPING'));
  };
  app.addHook('onRequest', async (request, reply) => {
    if (stopping) return stopAnswer(reply);
    inFlight.set(request, reply);
  });
  // A connection kept alive past the stop's answers would hold the stop for keepAliveTimeout (65 s).
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (stopping) reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('onResponse', async (request) => answered(request));
  app.addHook('onRequestAbort', async (request) => answered(request));
  return {
    close() {
      stopping = true;
      endIdleAfterGrace(app.server, idleGraceMs);
      // The listening socket closes now, before any answer says `Connection: close`: Fastify's
      // close closes it some ticks later, and a client that reconnected at such an answer in
      // between waited in the accept queue and was reset when it closed (CI at aa5b1b4:
      // ECONNRESET on a fresh connection). Fastify's own close then finds it closed, as it allows.
      app.server.close();
      const closed = app.close();
      // An answered request whose body is still arriving (a refusal's 503 kept its connection)
      // is no work accepted: its connection is ended now, lingering, not waited for.
      cutDrains(app.server);
      // Nor is a connection with nothing in flight: ended once the last answer had time to leave.
      const allAnswered = inFlight.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => (answeredAll = resolve));
      void allAnswered.then(() => setTimeout(() => app.server.closeAllConnections(), CUT_FLUSH_MS).unref());
      return closed;
    },
    cut() {
      for (const reply of inFlight.values()) if (!reply.sent) stopAnswer(reply);
      inFlight.clear();
      setTimeout(() => app.server.closeAllConnections(), CUT_FLUSH_MS).unref();
    },
  };
}

/**
 * Keeps `server`'s idle connections through the close that follows (Node's server.close() and
 * Fastify's close end them at once), and ends those still idle `graceMs` later: a request
 * begun on one by then is answered, and its answer closes it. Node's own closeIdleConnections
 * does the ending, once what arrived by then was read (an immediate: after the event loop's poll
 * for I/O), since it knows which connections have a request begun, a header half sent included.
 */
function endIdleAfterGrace(server: Server, graceMs: number): void {
  const closeIdle = server.closeIdleConnections;
  server.closeIdleConnections = () => undefined;
  setTimeout(() => setImmediate(() => closeIdle.call(server)), graceMs).unref();
}

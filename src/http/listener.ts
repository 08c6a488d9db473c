/**
 * @module http/listener
 * One fastify instance per listener, set up the same way for all three: TorchServe's response
 * headers, bodies read as raw bytes up to max_request_size, one error handler that answers every
 * failure with `{code, type, message}`, an access-log line and a response-class metric per reply.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { ServerConfig } from '../config/server-config.js';
import { isTsError, TsError, tsError } from '../errors.js';
import type { Loggers } from '../log/loggers.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import { describeRoutes } from './api-description.js';
import { gson, sendError } from './reply.js';
import { MAX_FORM_FIELDS } from './input.js';
import { type ListenerStop, stoppable } from './stopping.js';
import { httpsServer, type TlsMaterial } from './tls.js';
import { traceIdOf } from './predict.js';
import { isWarmUp } from './warm-up.js';
import { closeLingering, dropIncoming, lingerIfBodyUnread } from './lingering-close.js';

export interface ListenerDeps {
  readonly config: ServerConfig;
  readonly metrics: MetricsRegistry;
  readonly loggers: Loggers;
}

/**
 * No route declares a JSON schema (bodies are bytes; parameters are checked where TorchServe
 * checks them, with its messages), so fastify is told not to load ajv and fast-json-stringify:
 * about 100 modules a model server would hold in memory for nothing.
 */
const noSchemaCompiler = (): never => {
  throw new Error('tsserve routes declare no JSON schemas');
};
const NO_SCHEMA_COMPILERS = { buildValidator: () => noSchemaCompiler, buildSerializer: () => noSchemaCompiler };

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Until answered, its client's address (a socket reset no longer says), for the line of a
     * request its client abandoned; `answered` once it was. A field every request has, as its
     * traceId (http/predict.ts), not a WeakMap entry per request: work for the GC.
     */
    arrival: Pick<Socket, 'remoteAddress' | 'remotePort'> | 'answered' | null;
  }
}

/** The longest path segment (a model name, a version) a route reads. */
const MAX_PARAM_LENGTH = 1000;

/** A listener; with `tls`, an HTTPS one; `root` is what its `GET /` answers, when not 405. */
export function createListener(
  deps: ListenerDeps,
  tls?: TlsMaterial,
  root?: Parameters<typeof describeRoutes>[1],
): { app: FastifyInstance; stop: ListenerStop } {
  const { config } = deps;
  const app = Fastify({
    ...(tls
      ? {
          serverFactory: (handler: RequestListener) =>
            httpsServer(tls, handler, (socket, head) => accountUnparsed(deps, socket, head, 403)) as unknown as Server,
        }
      : {}),
    logger: false,
    bodyLimit: config.maxRequestSize,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_PARAM_LENGTH },
    keepAliveTimeout: 65_000,
    // Stopping, a new request is refused with TorchServe's JSON (http/stopping.ts), not Fastify's.
    return503OnClosing: false,
    schemaController: { compilersFactory: NO_SCHEMA_COMPILERS },
    // A bad %-escape or an over-long path segment, refused by the router before any route runs.
    frameworkErrors: (err, request, reply) => {
      const e =
        err.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? new TsError('TSS_ERR_HTTP_BAD_REQUEST', `A path segment is longer than ${MAX_PARAM_LENGTH} characters`, 414)
          : toTsError(err, config.maxRequestSize);
      closeIfBodyUnread(request.raw, reply);
      // Refused before any route: fastify's onResponse hook does not run for it.
      answerQueued(reply.raw, deps);
      reply.raw.once('finish', () => {
        noteClosing(reply);
        whenSent(reply.raw, () => account(deps, request.raw, reply.statusCode, reply.elapsedTime));
      });
      void sendError(reply, e);
    },
    clientErrorHandler: (err, socket) => answerClientError(err, socket, deps),
  });
  // Each request's traced prediction's trace id (http/predict.ts), a field of every request.
  app.decorateRequest('traceId', '');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  const fixed = fixedHeaders(config);
  app.decorateRequest('arrival', null);
  app.addHook('onRequest', async (request, reply) => {
    const { remoteAddress, remotePort } = request.raw.socket;
    request.arrival = { remoteAddress, remotePort };
    reply.raw.once('close', () => logAbandoned(deps, request, reply));
    answerQueued(reply.raw, deps);
    reply.header('x-request-id', request.id).headers(fixed);
  });
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => continueWhenRead(app.server, req, res));
  const stop = stoppable(app, config.stopIdleGraceMs);
  app.addHook('onResponse', async (request, reply) => {
    // A call made in process (gRPC management runs as its REST call) is logged by its caller.
    // Neither is the front end's own warm-up (http/warm-up.ts).
    request.arrival = 'answered';
    noteClosing(reply);
    if (!(request.raw.socket instanceof Socket) || isWarmUp(request.raw)) return;
    whenSent(reply.raw, () => account(deps, request.raw, reply.statusCode, reply.elapsedTime, traceIdOf(request)));
  });
  app.setErrorHandler((err: FastifyError | TsError, request, reply) => {
    const e = toTsError(err, config.maxRequestSize);
    logFailure(deps.loggers, err, e);
    closeIfBodyUnread(request.raw, reply);
    return sendError(reply, e);
  });
  app.setNotFoundHandler((request, reply) => {
    closeIfBodyUnread(request.raw, reply);
    return sendError(reply, tsError('TSS_ERR_HTTP_NOT_FOUND'));
  });
  describeRoutes(app, root);
  return { app, stop };
}

/**
 * A failure we did not foresee is logged with its stack; a foreseen 5xx (a worker died, a handler
 * failed) in one line. A 503 refusal is load, not a fault: the access log has it, and logging each
 * one would make the log the bottleneck of an overloaded server.
 */
function logFailure(loggers: Loggers, original: unknown, e: TsError): void {
  if (e.status < 500 || e.status === 503) return;
  if (isTsError(original)) loggers.server.warn(`request failed: ${e.status} ${e.message}`);
  else loggers.server.error({ err: original }, 'request failed');
}

/** Answers waiting behind another on their connection (pipelined): resolved once they go out. */
const queuedAnswers = new WeakMap<ServerResponse, Promise<void>>();
/** Queued answers not yet given their connection: one closed first was never sent. */
const unsent = new WeakSet<ServerResponse>();
/** Those whose line logUnsent wrote. */
const unsentLogged = new WeakSet<ServerResponse>();
/** Connections an answer closed (`Connection: close`): what was queued behind it the server ended. */
const closedByAnswer = new WeakSet<Socket>();

/**
 * Notes, as its request arrives, that `res` waits behind an earlier answer on its connection:
 * HTTP/1.1 answers in order, and Node says such an answer finished while it is still held. If the
 * connection closes before its turn, its request gets its line here (logUnsent), whichever route
 * it took (a route's, the router's refusal, a raw refusal): no answer of it goes out, so no
 * line written once it went out (whenSent) ever would be.
 */
export function answerQueued(res: ServerResponse, deps: Pick<ListenerDeps, 'loggers'>): void {
  if (res.socket || queuedAnswers.has(res)) return;
  const began = performance.now();
  // Its client's address while the connection says it: a closed one may not.
  const { remoteAddress, remotePort } = res.req.socket;
  unsent.add(res);
  // Given its connection as the answer before it finishes, whose line is written in the same
  // turn of the event loop: this one's comes in the next.
  queuedAnswers.set(
    res,
    new Promise((resolve) =>
      res.once('socket', () => {
        unsent.delete(res);
        setImmediate(resolve);
      }),
    ),
  );
  const log = (): void => logUnsent(deps, res, { remoteAddress, remotePort }, performance.now() - began);
  res.once('close', log);
  unsentOnClose(res.req.socket, log);
}

/** Per connection, the lines of its queued answers: Node 22 closes no answer still queued when its connection closes (24 does). */
const unsentLines = new WeakMap<Duplex, Array<() => void>>();

/** Calls `log` when `socket` closes (logUnsent writes nothing for an answer that went out): one listener a connection. */
function unsentOnClose(socket: Duplex, log: () => void): void {
  const lines = unsentLines.get(socket);
  if (lines) {
    lines.push(log);
    return;
  }
  unsentLines.set(socket, [log]);
  socket.once('close', () => {
    for (const line of unsentLines.get(socket) ?? []) line();
    unsentLines.delete(socket);
  });
}

/**
 * A queued answer whose connection closed before its turn: `closed` when an answer before it
 * closed the connection (a 400 with its body unread: the server, not the client, ended this
 * request), `aborted` when its client left. No response class counts it: nothing was sent.
 */
function logUnsent(deps: Pick<ListenerDeps, 'loggers'>, res: ServerResponse, peer: Pick<Socket, 'remoteAddress' | 'remotePort'>, ms: number): void {
  // Called at the answer's close and at its connection's, whichever comes first; the answer stays
  // unsent, so that logAbandoned, also at its close, leaves its line to this.
  if (!unsent.has(res) || unsentLogged.has(res)) return;
  unsentLogged.add(res);
  const request = res.req;
  const socket = request.socket;
  if (!(socket instanceof Socket) || isWarmUp(request)) return;
  deps.loggers.access(clientLine(peer, requestLine(request), endedBy(socket), ms));
}

/** Who ended a request left unanswered on `socket`: the server (an answer before closed it), or its client. */
function endedBy(socket: Socket): 'closed' | 'aborted' {
  return closedByAnswer.has(socket) ? 'closed' : 'aborted';
}

/**
 * Marks `reply`'s connection, as `reply` finished, if `reply` closed it: its `Connection: close`
 * (ours, Fastify's, or Node's for a client that asked). Node may still parse and route requests
 * pipelined behind it (its body was read by then), whose answers go nowhere.
 */
function noteClosing(reply: FastifyReply): void {
  const socket = reply.request.raw.socket;
  if (!(socket instanceof Socket)) return;
  if (!reply.raw.shouldKeepAlive || /close/i.test(String(reply.getHeader('connection') ?? ''))) closedByAnswer.add(socket);
}

/** Calls `write` (an access-log line) once `res` went out: the lines keep the order of the answers. */
export function whenSent(res: ServerResponse, write: () => void): void {
  const queued = queuedAnswers.get(res);
  if (queued) void queued.then(write);
  else write();
}

/**
 * A client gone before its answer went out (it reset the connection, ended it mid-body, or left
 * while its prediction waited or ran) was answered nothing: its line says so (`aborted`; `closed`
 * when an answer before it on its connection closed it), and no response class counts it. Its
 * connection's close before the answer finished says so, whatever the request had read
 * (Fastify's onRequestAbort sees only a body cut short).
 */
function logAbandoned(deps: ListenerDeps, request: FastifyRequest, reply: FastifyReply): void {
  const peer = request.arrival;
  // A queued answer never sent has its line from answerQueued's logUnsent.
  if (
    peer === null ||
    peer === 'answered' ||
    unsent.has(reply.raw) ||
    reply.raw.writableFinished ||
    !(request.raw.socket instanceof Socket) ||
    isWarmUp(request.raw)
  )
    return;
  request.arrival = 'answered';
  deps.loggers.access(clientLine(peer, requestLine(request.raw), endedBy(request.raw.socket), reply.elapsedTime));
}

/** An answered request's access-log line and response-class metric. */
function account(deps: ListenerDeps, request: IncomingMessage, status: number, ms: number, traceId?: string): void {
  deps.metrics.response(status);
  deps.loggers.access(accessLine(request, status, ms, traceId));
}

/**
 * `Expect: 100-continue` gets its `100 Continue` once the request's body is first read, not as its
 * headers arrive: a request answered before its body is read (a refusal, a 413 on its declared
 * length, a bad key) gets only its final answer, and its client need not send the body (RFC 9110
 * §10.1.1). Node, left to itself, writes the 100 at once. A request for an unknown route or model
 * still gets its 100 and sends its body: Fastify reads the body before its route (or its 404).
 */
function continueWhenRead(server: Server, req: IncomingMessage, res: ServerResponse): void {
  req.once('resume', () => {
    if (!res.headersSent) res.writeContinue();
  });
  server.emit('request', req, res);
}

/** A response's access-log line (TorchServe's access_log.log), `ms` after the request came. */
export function accessLine(request: IncomingMessage, status: number, ms: number, traceId?: string): string {
  const line = clientLine(request.socket, requestLine(request), status, ms);
  // A traced request's line names its trace, so a slow one found in the log opens it.
  return traceId ? `${line} trace_id=${traceId}` : line;
}

function requestLine(request: IncomingMessage): string {
  return `${request.method} ${request.url} HTTP/${request.httpVersion}`;
}

/**
 * An access-log line's status: the answer's, `aborted` for a client gone before it, or `closed`
 * for a pipelined request the server ended unanswered (an answer before it closed the connection).
 */
function clientLine(socket: Pick<Socket, 'remoteAddress' | 'remotePort'>, requestLine: string, status: number | 'aborted' | 'closed', ms: number): string {
  return `/${socket.remoteAddress}:${socket.remotePort ?? 0} "${escapedRequestLine(requestLine)}" ${status} ${Math.round(ms)}`;
}

/** What of a request line nginx's access log escapes: anything but printable ASCII, and a quote and a backslash. */
const UNSAFE_IN_QUOTES = /[^\x20\x21\x23-\x5b\x5d-\x7e]/;
const UNSAFE_IN_QUOTES_ALL = new RegExp(UNSAFE_IN_QUOTES.source, 'g');

/**
 * The client's request line as nginx writes it between the line's quotes: `"` as `\x22` and so
 * on, so that a client cannot end the quoted field and forge a status, a time or a trace id.
 * Almost every line has nothing to escape, and a test costs less than a replace that finds nothing.
 */
function escapedRequestLine(line: string): string {
  if (!UNSAFE_IN_QUOTES.test(line)) return line;
  return line.replace(UNSAFE_IN_QUOTES_ALL, (c) => `\\x${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** The longest part of an unparsable request's first line its access-log line repeats. */
const MAX_LOGGED_REQUEST_LINE = 1000;

/**
 * A request line's start: a method, a space, then a path, `*` or an absolute URL. What Node's parser
 * hands a refused request is the last chunk it read, which may begin inside the headers, with a
 * client's Authorization or Cookie: only a line of this shape is a request line to log.
 */
const METHOD_AND_TARGET = String.raw`[A-Z][A-Z_-]* (?:\/|\*|[a-z][a-z0-9+.-]*:\/\/)`;
const REQUEST_LINE_START = new RegExp(`^${METHOD_AND_TARGET}`);

/** The first line of what a refused request had sent, cut short, if it is a request line; `-` when none. */
function refusedRequestLine(raw: unknown, failedAt?: number): string {
  if (!Buffer.isBuffer(raw)) return '-';
  return lastRequestLine(raw, failedAt) ?? firstLine(raw);
}

/** `raw`'s first line, if it is a request line. */
function firstLine(raw: Buffer): string {
  const line = raw.subarray(0, MAX_LOGGED_REQUEST_LINE).toString('latin1').split(/\r?\n/, 1)[0] ?? '';
  return REQUEST_LINE_START.test(line) ? line : '-';
}

/**
 * The request line of the request the parser failed in, `failedAt` bytes into `raw`: the last
 * before it, where requests pipelined in one packet came first (their own answers are theirs).
 */
function lastRequestLine(raw: Buffer, failedAt: number | undefined): string | undefined {
  if (failedAt === undefined || failedAt <= 0) return undefined;
  // To the end of the line it failed in, which may be the request line itself.
  const end = raw.indexOf(0x0a, failedAt);
  const text = raw.subarray(0, end === -1 ? raw.length : end).toString('latin1');
  const start = [...text.matchAll(REQUEST_LINE_ANYWHERE)].at(-1)?.index;
  return start === undefined ? undefined : text.slice(start).split(/\r?\n/, 1)[0]!.slice(0, MAX_LOGGED_REQUEST_LINE);
}

/**
 * Where a request line starts: at a line's start (its version may be what the parser refused), or
 * mid-line when whole, for a request pipelined right after a body (which ends with no line end).
 */
const REQUEST_LINE_ANYWHERE = new RegExp(String.raw`(?<=^|\n)${METHOD_AND_TARGET}|${METHOD_AND_TARGET}\S* HTTP\/\d\.\d\r?\n`, 'g');

/**
 * A request refused before it was parsed (plain HTTP to an HTTPS listener, what Node's parser
 * refuses): its access-log line, with what `raw` holds of its first line, and response-class metric.
 */
function accountUnparsed(deps: ListenerDeps, socket: Socket, raw: unknown, status: number, failedAt?: number): void {
  deps.metrics.response(status);
  deps.loggers.access(clientLine(socket, refusedRequestLine(raw, failedAt), status, 0));
}

/**
 * Headers on every response beside its `x-request-id` (TorchServe's NettyUtils.sendHttpResponse).
 * The Cache-Control value keeps TorchServe's semicolon, since clients and caches have only ever
 * seen that string.
 */
export function fixedHeaders(config: ServerConfig): Readonly<Record<string, string>> {
  const headers: Record<string, string> = {
    Pragma: 'no-cache',
    'Cache-Control': 'no-cache; no-store, must-revalidate, private',
    Expires: 'Thu, 01 Jan 1970 00:00:00 UTC',
  };
  if (config.corsAllowedOrigin) headers['Access-Control-Allow-Origin'] = config.corsAllowedOrigin;
  if (config.corsAllowedMethods) headers['Access-Control-Allow-Methods'] = config.corsAllowedMethods;
  if (config.corsAllowedHeaders) headers['Access-Control-Allow-Headers'] = config.corsAllowedHeaders;
  return headers;
}

/**
 * An answer sent before the request's body was read (a 413 on its Content-Length, a multipart
 * body refused part-way) leaves the rest of that body on the connection: a client that reuses it
 * would wait forever for its next answer. Such a connection is closed once answered, lingering
 * (http/lingering-close.ts), so that a client still writing the body reads the answer.
 */
function closeIfBodyUnread(raw: IncomingMessage, reply: FastifyReply): void {
  if (raw.complete) return;
  reply.header('connection', 'close');
  lingerIfBodyUnread(raw);
}

/**
 * What Node's HTTP parser refuses before any route sees it (an undecodable request line, headers
 * over their limit, a request that timed out) gets TorchServe's error JSON too, and its
 * access-log line (with what was read of its first line), then the connection is closed, as Node
 * does, but lingering (http/lingering-close.ts): the client may still be writing what was refused.
 */
/** What Node's HTTP parser says of a request it refused: where it failed, in the chunk it read. */
type ParserError = Error & { code?: string; rawPacket?: unknown; bytesParsed?: number };

function answerClientError(err: ParserError, socket: Duplex, deps: ListenerDeps): void {
  // The client reset the connection, or ended it mid-request: it is gone, and nothing is answered
  // (a request that had reached its route gets its `aborted` line there).
  if (err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE' || socket.destroyed) {
    socket.destroy();
    return;
  }
  // The parser, once failed, fails again on every later chunk of the connection: one answer.
  if (refusedByParser.has(socket)) return;
  refusedByParser.add(socket);
  // While answers ahead go out, what still comes is read and dropped, within lingering's bound.
  if (socket instanceof Socket && answerAhead(socket)) dropIncoming(socket, () => socket.destroy());
  afterAnswersAhead(socket, () => writeClientError(err, socket, deps));
}

/** The answer that has `socket` now, one Node queued behind another included (see afterAnswersAhead). */
function answerAhead(socket: Duplex): ServerResponse | null | undefined {
  return (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
}

/** Connections whose parser failed: their 400 is written, or waits for the answers ahead of it. */
const refusedByParser = new WeakSet<Duplex>();

/**
 * Calls `then` once the answers to the requests read before the one the parser refused went out:
 * HTTP/1.1 answers in order, so the 400 comes after them, and the close it brings ends nothing
 * already accepted (it was written at once, ahead of them, and the close lost them). Node keeps the
 * answer that has the connection as `socket._httpMessage` and hands it the next one queued as it
 * finishes, before its `close`. After the last, `then` waits a turn of the event loop, as their
 * access lines do (whenSent), so that the 400's line follows theirs.
 */
function afterAnswersAhead(socket: Duplex, then: () => void, waited = false): void {
  const ahead = answerAhead(socket);
  if (ahead && !socket.destroyed) ahead.once('close', () => afterAnswersAhead(socket, then, true));
  else if (waited) setImmediate(then);
  else then();
}

/** The parser's refusal: its 400 (431, 408), with `Connection: close`, then the connection closes. */
function writeClientError(err: ParserError, socket: Duplex, deps: ListenerDeps): void {
  const [status, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request header fields are too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request timed out']
        : [400, `Malformed HTTP request: ${err.message}`];
  const body = gson(new TsError('TSS_ERR_HTTP_BAD_REQUEST', message, status).toJSON());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    if (socket instanceof Socket) {
      // The server, not the client, ends what may still be on this connection.
      closedByAnswer.add(socket);
      accountUnparsed(deps, socket, err.rawPacket, status, err.bytesParsed);
    } else deps.metrics.response(status);
  } else if (socket instanceof Socket) {
    // Gone while answers ahead went out: its client left, or an answer closed the connection
    // (its `Connection: close`, the stop's). Its line says so; nothing was sent.
    deps.loggers.access(clientLine(socket, refusedRequestLine(err.rawPacket, err.bytesParsed), endedBy(socket), 0));
  }
  if (socket instanceof Socket && socket.writable) closeLingering(socket);
  else socket.destroy();
}

function toTsError(err: FastifyError | TsError, maxRequestSize: number): TsError {
  if (isTsError(err)) return err;
  const status = err.statusCode ?? 500;
  if (err.code === 'FST_PARTS_LIMIT' || err.code === 'FST_FILES_LIMIT') {
    return tsError('TSS_ERR_HTTP_TOO_MANY_PARTS', MAX_FORM_FIELDS);
  }
  if (status === 413 || err.code === 'FST_REQ_FILE_TOO_LARGE') return tsError('TSS_ERR_HTTP_BODY_TOO_LARGE', maxRequestSize);
  if (status >= 400 && status < 500) return new TsError('TSS_ERR_HTTP_BAD_REQUEST', err.message, status);
  return tsError('TSS_ERR_INTERNAL', err.message || 'Internal server error');
}

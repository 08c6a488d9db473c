/**
 * @module app/app
 * The web app of the seed, decoupled from the model server as the seed's Flask app was from
 * TorchServe: it serves the pages in web/ and calls tsserve over HTTP. Browsers never hold a
 * tsserve key: the app reads key_file.json and adds the keys to what it forwards.
 *
 *   /api/health           both listeners' health, for the banner on every page, and the upload limit
 *   /api/predict/:model   the request body, as sent, to /predictions/:model; the answer streamed back
 *   /api/explain/:model   the same to /explanations/:model (the classification page's heat map)
 *   /api/models           registered models, versions, workers and their states, request counts
 *   /api/metrics          one reading of tsserve's /metrics for the live page (app/metrics-text.ts)
 *   /lib/live-series.js   the live page's arithmetic (app/live-series.ts), compiled, for the browser
 *
 * Closed (app.close(), on SIGTERM), it stops accepting and lets what it forwards finish within
 * its drain timeout; a forward still waiting on tsserve then is cut and answered 503.
 */
import { type IncomingMessage, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { keyDefault } from '../config/keys.js';
import { liveReading, parseMetricsText, sumByModel } from './metrics-text.js';

export interface AppOptions {
  readonly inference: string;
  readonly management: string;
  readonly metrics?: string | undefined;
  /** tsserve's key_file.json; without one, requests go without keys (token auth off). */
  readonly keyFile?: string | undefined;
  /** Largest upload forwarded, in bytes. */
  readonly maxUpload?: number;
  /** Seconds a close gives the requests in flight before it cuts them. */
  readonly drainTimeout?: number;
  /** Seconds a forward waits for tsserve's answer to begin before it is answered 504. */
  readonly forwardTimeout?: number;
}

const WEB = fileURLToPath(new URL('../../../web/', import.meta.url));
/** Compiled beside this module (dist/src/app/), with no imports: the browser loads it as it is. */
const LIVE_SERIES = fileURLToPath(new URL('./live-series.js', import.meta.url));
/** tsserve's own default max_request_size: the page allows what the server takes. */
export const DEFAULT_MAX_UPLOAD = Number(keyDefault('max_request_size'));
/** Well within a pod's grace period (30 s by default, the app pod's 45 s), beside tsserve's own stop. */
export const DEFAULT_DRAIN_TIMEOUT = 10;
/** tsserve's default_response_timeout (120 s), and time for its own 504 to come back first. */
export const DEFAULT_FORWARD_TIMEOUT = 130;
/** After the drain, what a cut request's answer may take to go out before its connection is closed anyway. */
const CUT_GRACE_MS = 2_000;

export function createApp(opts: AppOptions): FastifyInstance {
  const maxUpload = opts.maxUpload ?? DEFAULT_MAX_UPLOAD;
  // Closing, idle keep-alive connections are closed at once: they hold nothing, and would hold the stop.
  const app = Fastify({
    logger: false,
    bodyLimit: maxUpload,
    forceCloseConnections: 'idle',
    // A path the router cannot read (a bad %-escape, a parameter over its length) and a request
    // Node's parser refuses get the app's own error shape too.
    frameworkErrors: (err, _request, reply) => void problem(reply, 400, err.message),
    clientErrorHandler: answerClientError,
  });
  const drainTimeout = opts.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT;
  const cut = cutAfterDrain(app, drainTimeout * 1000);
  // Bodies are forwarded as they arrive, never parsed here.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
  // An answer sent before the upload was read (tsserve refused it, or it went away) ends the
  // connection: left open, the browser or client would go on sending, and wait for the server's
  // keep-alive timeout (72 s) before it learned anything.
  // Closing, every answer ends its connection too, as its client's next request would find none.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (!request.raw.complete || !app.server.listening) reply.header('connection', 'close');
    done(null, payload);
  });
  answerFrameworkErrors(app);
  app.register(fastifyStatic, { root: WEB, extensions: ['html'] });

  // Read at each call, once: /token may have replaced the keys since the last one.
  const auth = (): Record<'inference' | 'management', Record<string, string>> => {
    const file = opts.keyFile;
    const keys = file && existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, { key?: string }>) : {};
    const header = (kind: string): Record<string, string> => (keys[kind]?.key ? { authorization: `Bearer ${keys[kind].key}` } : {});
    return { inference: header('inference'), management: header('management') };
  };

  app.get('/api/health', async () => {
    const headers = auth();
    const [inference, management] = await Promise.all([
      probe(`${opts.inference}/ping`, headers.inference, cut),
      probe(`${opts.management}/models`, headers.management, cut),
    ]);
    return { inference, management, maxUpload };
  });

  const forwardTimeout = opts.forwardTimeout ?? DEFAULT_FORWARD_TIMEOUT;
  const forward =
    (api: 'predictions' | 'explanations') =>
    async (request: FastifyRequest<{ Params: { model: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
      if (!request.body) return problem(reply, 400, 'Nothing was uploaded: choose a file first.');
      const length = Number(request.headers['content-length'] ?? 0);
      const tooLarge = (size: string): FastifyReply => problem(reply, 413, `The upload is ${size}; the limit is ${mb(maxUpload)}.`);
      if (length > maxUpload) return tooLarge(mb(length));
      const headers: Record<string, string> = { ...auth().inference };
      if (request.headers['content-type']) headers['content-type'] = request.headers['content-type'];
      // A chunked upload announces no length: its bytes are counted as they pass.
      const upload = countedUpload(request.body as Readable, maxUpload);
      const answered = new AbortController();
      const late = setTimeout(() => answered.abort(), forwardTimeout * 1000);
      let res: Response;
      try {
        res = await fetch(`${opts.inference}/${api}/${encodeURIComponent(request.params.model)}`, {
          method: 'POST',
          headers,
          body: Readable.toWeb(upload.body) as unknown as RequestInit['body'],
          duplex: 'half',
          signal: AbortSignal.any([cut, answered.signal]),
        } as RequestInit);
      } catch (err) {
        if (upload.over()) {
          // Read (and drop) the rest first, for a while: closed on a client still sending, the
          // connection is reset, and the 413 is lost with what the client had not read.
          await discarded(request.raw, DISCARD_MS);
          return tooLarge(`over ${mb(maxUpload)}`);
        }
        if (cut.aborted) {
          return problem(reply, 503, `tsserve-app is stopping, and the model server did not answer within its drain timeout (${drainTimeout} s). Try again.`);
        }
        if (answered.signal.aborted) {
          return problem(reply, 504, `The model server did not answer within ${forwardTimeout} s (tsserve-app --forward-timeout). Try again later.`);
        }
        if (!cutShort(err)) return problem(reply, 502, 'The model server does not answer. Is tsserve running?');
        return problem(
          reply,
          502,
          `The model server closed the connection after ${mb(upload.bytes())} of the upload: it takes up to its max_request_size (tsserve-app --max-upload says the same to this page), or it stopped.`,
        );
      } finally {
        clearTimeout(late);
      }
      reply.code(res.status).header('content-type', res.headers.get('content-type') ?? 'application/octet-stream');
      return reply.send(res.body ? Readable.fromWeb(res.body as WebReadableStream) : '');
    };
  app.post('/api/predict/:model', forward('predictions'));
  app.post('/api/explain/:model', forward('explanations'));

  app.get('/api/models', async (_request, reply) => {
    const headers = auth().management;
    try {
      const list = await getJson<{ models: Array<{ modelName: string }> }>(`${opts.management}/models?limit=100`, headers, cut);
      const described = await Promise.all(
        list.models.map((m) => getJson<unknown[]>(`${opts.management}/models/${encodeURIComponent(m.modelName)}/all`, headers, cut)),
      );
      const counts = opts.metrics ? sumByModel(parseMetricsText(await metricsText(opts.metrics, cut)), 'ts_inference_requests_total') : {};
      return { models: described.flat(), requests: counts };
    } catch {
      return problem(reply, 502, 'The management API does not answer. Is tsserve running?');
    }
  });

  app.get('/api/metrics', async (_request, reply) => {
    if (!opts.metrics) return problem(reply, 404, 'tsserve-app was started without --metrics: there is nothing to chart.');
    const text = await metricsText(opts.metrics, cut);
    if (!text) return problem(reply, 502, 'The metrics API does not answer. Is tsserve running, with metrics_mode prometheus?');
    return liveReading(parseMetricsText(text), Date.now());
  });
  app.get('/lib/live-series.js', (_request, reply) => reply.type('text/javascript').send(readFileSync(LIVE_SERIES, 'utf8')));

  return app;
}

/**
 * Aborted once the app has closed for its drain timeout: the calls to tsserve still running
 * then are cut, so that their requests are answered and the close ends. Its connections are
 * closed CUT_GRACE_MS later, whatever their clients do.
 */
function cutAfterDrain(app: FastifyInstance, drainMs: number): AbortSignal {
  const cutting = new AbortController();
  const timers: NodeJS.Timeout[] = [];
  app.addHook('preClose', (done) => {
    timers.push(setTimeout(() => cutting.abort(), drainMs).unref(), setTimeout(() => app.server.closeAllConnections(), drainMs + CUT_GRACE_MS).unref());
    done();
  });
  app.addHook('onClose', (_instance, done) => {
    for (const timer of timers) clearTimeout(timer);
    done();
  });
  return cutting.signal;
}

/** Aborted after `ms`, or at once when the stop cuts the calls to tsserve. */
function timeoutOrCut(ms: number, cut: AbortSignal): AbortSignal {
  return AbortSignal.any([AbortSignal.timeout(ms), cut]);
}

async function probe(url: string, headers: Record<string, string>, cut: AbortSignal): Promise<{ ok: boolean; status: number | null }> {
  try {
    const res = await fetch(url, { headers, signal: timeoutOrCut(3000, cut) });
    await res.arrayBuffer();
    return { ok: res.status === 200, status: res.status };
  } catch {
    return { ok: false, status: null };
  }
}

async function getJson<T>(url: string, headers: Record<string, string>, cut: AbortSignal): Promise<T> {
  const res = await fetch(url, { headers, signal: timeoutOrCut(5000, cut) });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return (await res.json()) as T;
}

/** tsserve's /metrics text; empty when it does not answer. */
async function metricsText(metrics: string, cut: AbortSignal): Promise<string> {
  return fetch(`${metrics}/metrics`, { signal: timeoutOrCut(3000, cut) }).then(
    (r) => (r.ok ? r.text() : ''),
    () => '',
  );
}

/** An upload that counts its bytes as they pass and fails once they are over `limit`. */
function countedUpload(source: Readable, limit: number): { body: Readable; bytes(): number; over(): boolean } {
  let bytes = 0;
  const body = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      done(bytes > limit ? new Error(`upload over ${limit} bytes`) : null, chunk);
    },
  });
  // The client going away ends the forward as the plain body's end would have.
  source.on('error', (err) => body.destroy(err));
  source.pipe(body);
  return { body, bytes: () => bytes, over: () => bytes > limit };
}

/** How long the rest of an upload over the limit is read and dropped before it is refused. */
const DISCARD_MS = 2000;

/** Resolves once `body` has ended (its bytes dropped as they come) or after `ms`, whichever is first. */
function discarded(body: IncomingMessage, ms: number): Promise<void> {
  if (body.complete) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    body.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
    body.resume();
  });
}

/** The server took the connection and closed it mid-request, as opposed to never taking it. */
function cutShort(err: unknown): boolean {
  const code = (err as { cause?: { code?: string } }).cause?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET';
}

/**
 * The exception name of each error status the app answers, as TorchServe names its own (its
 * errors have no 502 or 504: those are named as Java names them).
 */
const ERROR_TYPES: Readonly<Record<number, string>> = {
  400: 'BadRequestException',
  404: 'ResourceNotFoundException',
  405: 'MethodNotAllowedException',
  413: 'RequestEntityTooLargeException',
  502: 'BadGatewayException',
  503: 'ServiceUnavailableException',
  504: 'GatewayTimeoutException',
};

/** An error answer, shaped as tsserve's and TorchServe's: `{code, type, message}`. */
function problem(reply: FastifyReply, status: number, message: string): FastifyReply {
  const type = ERROR_TYPES[status] ?? (status >= 500 ? 'InternalServerException' : 'BadRequestException');
  return reply.code(status).type('application/json').send({ code: status, type, message });
}

/** What the framework refuses (an unknown path, a broken request) is answered as the app's own errors are. */
function answerFrameworkErrors(app: FastifyInstance): void {
  app.setNotFoundHandler((_request, reply) => problem(reply, 404, 'Requested resource is not found, please refer to API document.'));
  app.setErrorHandler((err: { statusCode?: number; message: string }, _request, reply) => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    return problem(reply, status, status < 500 ? err.message : 'Internal server error');
  });
}

function mb(bytes: number): string {
  // Under a tenth of a megabyte, in bytes: "0.0 MB" says nothing of a small limit.
  return bytes < 0.1 * 1024 * 1024 ? `${bytes} bytes` : `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A request Node's HTTP parser refused (headers over their limit, a broken Content-Length): answered as the app's errors are, then closed. */
function answerClientError(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const body = JSON.stringify({ code: status, type: ERROR_TYPES[status] ?? 'BadRequestException', message: `Malformed HTTP request: ${err.message}` });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

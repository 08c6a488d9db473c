/**
 * @module http/input
 * An HTTP request as a handler's input (spec §3.3): each multipart part or form field is a
 * parameter under its name; any other body is one parameter named `body` whose content type is
 * the request's MIME type. The request headers go along (but those batching/job.ts handlerHeaders
 * keeps from handlers), plus any the route adds; the SageMaker and legacy routes put the query
 * parameters first.
 */
import type { IncomingMessage } from 'node:http';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ServerConfig } from '../config/server-config.js';
import { earlyRefusal } from '../batching/admission.js';
import { handlerHeaders } from '../batching/job.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import type { ModelRegistry } from '../models/model-registry.js';
import type { WireParam, WireRequest } from '../protocol/messages.js';
import { isTsError, type TsError, tsError } from '../errors.js';
import { isWarmUp, WARM_UP_HEADER } from './warm-up.js';

/** The most parts of a multipart body, or fields of an url-encoded form, one request may have. */
export const MAX_FORM_FIELDS = 1000;

/**
 * Whether the request says its body is longer than max_request_size. Such a request gets the
 * body limit's 413 whatever the model's state, as TorchServe's Netty refuses it on its headers:
 * a refusal's 503 kept the connection and read the whole body to throw it away.
 */
export function declaredTooLarge(request: IncomingMessage, limit: number): boolean {
  const declared = request.headers['content-length'];
  return declared !== undefined && Number(declared) > limit;
}

/** What mayRefuseEarly reads. */
export interface EarlyRefusalDeps {
  readonly config: ServerConfig;
  readonly registry: ModelRegistry;
  readonly metrics: MetricsRegistry;
}

/**
 * The 503 of a prediction for `name` (`version`: the URL's) when that model refuses it now,
 * counted (batching/admission.ts's earlyRefusal); undefined when the request goes on as any other:
 * no such model, one that takes it, the front end's warm-up (refused, if at all, where it is not
 * counted), a body declared over max_request_size (whose 413 comes first). Both refusals made
 * before the body is read ask it: the one before the router (http/raw-refusal.ts) and the
 * prediction routes' onRequest hook (http/predict.ts's refuseEarly).
 */
export function mayRefuseEarly(request: IncomingMessage, deps: EarlyRefusalDeps, name: string, version: string | undefined): TsError | undefined {
  if (isWarmUp(request) || declaredTooLarge(request, deps.config.maxRequestSize)) return undefined;
  const model = deps.registry.find(name, version);
  return model && earlyRefusal(deps.metrics, model, version);
}

/** Lets a listener's prediction routes read multipart bodies, up to max_request_size in all (readMultipart). */
export async function acceptMultipart(app: FastifyInstance, config: ServerConfig): Promise<void> {
  const limit = config.maxRequestSize;
  // latin1 maps each byte to one character: a field's bytes come back whole (readMultipart).
  await app.register(multipart, { limits: { fileSize: limit, fieldSize: limit, parts: MAX_FORM_FIELDS }, throwFileSizeLimit: true, defCharset: 'latin1' });
}

/** `keyed`: token authorization is on, so the Authorization header is the server's key (handlerHeaders). */
export async function toWireRequest(
  request: FastifyRequest,
  extraHeaders: Record<string, string>,
  withQuery: boolean,
  keyed: boolean,
  read?: (request: FastifyRequest) => WireParam[] | undefined,
): Promise<WireRequest> {
  const params = read?.(request) ?? (await readParams(request));
  return {
    id: request.id,
    headers: { ...handlerHeaders(flatHeaders(request), keyed), ...extraHeaders },
    params: withQuery ? [...queryParams(request), ...params] : params,
  };
}

/** A parameter's value as text, e.g. `/invocations`' `model_name` sent as a form field. */
export function stringParam(request: WireRequest, name: string): string | undefined {
  const param = request.params.find((p) => p.name === name);
  return param && Buffer.from(param.value.buffer, param.value.byteOffset, param.value.byteLength).toString('utf8');
}

/** Query parameters, before the body's, each value its own parameter without a content type. */
function queryParams(request: FastifyRequest): WireParam[] {
  return Object.entries((request.query ?? {}) as Record<string, string | string[]>).flatMap(([name, values]) =>
    [values].flat().map((value) => ({ name, contentType: undefined, value: Buffer.from(value, 'utf8') })),
  );
}

function flatHeaders(request: FastifyRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(request.headers)) {
    if (v !== undefined && k !== WARM_UP_HEADER) out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

/**
 * A file part's type. busboy reports `text/plain` for a part that names none, which is how
 * python-requests sends `files={"data": open(f, "rb")}`: such a part stays bytes, as TorchServe's
 * worker keeps a part without a type, instead of being decoded as text.
 */
function filePartType(mimetype: string): string | undefined {
  const type = mimeType(mimetype);
  return type === 'text/plain' ? undefined : type;
}

export function mimeType(header: string | undefined): string | undefined {
  const type = header?.split(';')[0]?.trim().toLowerCase();
  return type || undefined;
}

async function readParams(request: FastifyRequest): Promise<WireParam[]> {
  if (request.isMultipart()) return readMultipart(request);
  const contentType = mimeType(request.headers['content-type']);
  const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
  if (contentType === 'application/x-www-form-urlencoded') {
    // curl --data-binary @image.png says it sends a form; bytes no form could hold say it does not.
    return isFormText(body) ? formFields(body) : [{ name: 'body', contentType: undefined, value: body }];
  }
  return [{ name: 'body', contentType, value: body }];
}

/** An url-encoded form is printable ASCII (and line breaks); anything else is a raw body mislabelled. */
function isFormText(body: Buffer): boolean {
  for (const byte of body) {
    if ((byte < 0x20 || byte > 0x7e) && byte !== 0x0a && byte !== 0x0d && byte !== 0x09) return false;
  }
  return true;
}

/**
 * An url-encoded form's fields, their values as the bytes they encode: python-requests'
 * `data={"content": image_bytes}` percent-encodes raw bytes, which UTF-8 decoding would turn into
 * U+FFFD. Names are text.
 */
export function formFields(body: Buffer): WireParam[] {
  // Counted before anything is decoded: a body of a million tiny fields held the event loop for
  // seconds and took hundreds of MB, where a multipart body of as many parts is refused.
  if (fieldSeparators(body) >= MAX_FORM_FIELDS) throw tsError('TSS_ERR_HTTP_TOO_MANY_PARTS', MAX_FORM_FIELDS);
  const params: WireParam[] = [];
  for (const pair of body.toString('latin1').split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const [name, value] = eq < 0 ? [pair, ''] : [pair.slice(0, eq), pair.slice(eq + 1)];
    params.push({ name: percentDecode(name).toString('utf8'), contentType: undefined, value: percentDecode(value) });
  }
  return params;
}

function fieldSeparators(body: Buffer): number {
  let count = 0;
  for (let i = body.indexOf(0x26); i >= 0; i = body.indexOf(0x26, i + 1)) count++;
  return count;
}

/** `+` is a space, `%XX` a byte; a `%` not followed by two hex digits stays as it is, as browsers do. */
function percentDecode(text: string): Buffer {
  const out = Buffer.allocUnsafe(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2b) {
      out[n++] = 0x20;
    } else if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      out[n++] = Number.parseInt(text.slice(i + 1, i + 3), 16);
      i += 2;
    } else {
      out[n++] = c;
    }
  }
  return out.subarray(0, n);
}

/**
 * A multipart body's parts. busboy's limits bound each part, not their sum, so the body itself is
 * counted as it arrives: past max_request_size (the listener's bodyLimit) in total, as the plain
 * body's limit does, its reading stops and the request is refused with the plain body's 413. An
 * announced length over the limit is refused before anything is read.
 */
async function readMultipart(request: FastifyRequest): Promise<WireParam[]> {
  const limit = request.routeOptions.bodyLimit;
  if (Number(request.headers['content-length']) > limit) throw tsError('TSS_ERR_HTTP_BODY_TOO_LARGE', limit);
  const overLimit = bodyOverLimit(request.raw, limit);
  try {
    return await Promise.race([readParts(request), overLimit.refused]);
  } finally {
    overLimit.stop();
  }
}

/**
 * Rejects once `body` has brought more than `limit` bytes: the parser is detached from it and it
 * is paused, so no more of it is read, and what the parser held is let go with the request.
 */
function bodyOverLimit(body: IncomingMessage, limit: number): { refused: Promise<never>; stop: () => void } {
  let received = 0;
  let onData: (chunk: Buffer) => void = () => undefined;
  const refused = new Promise<never>((_resolve, reject) => {
    onData = (chunk) => {
      received += chunk.length;
      if (received <= limit) return;
      body.off('data', onData);
      body.unpipe();
      body.pause();
      reject(tsError('TSS_ERR_HTTP_BODY_TOO_LARGE', limit));
    };
  });
  refused.catch(() => undefined);
  body.on('data', onData);
  return { refused, stop: () => body.off('data', onData) };
}

async function readParts(request: FastifyRequest): Promise<WireParam[]> {
  const params: WireParam[] = [];
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        params.push({ name: part.fieldname, contentType: filePartType(part.mimetype), value: await part.toBuffer() });
      } else {
        // Read as latin1 (acceptMultipart's defCharset), so these are the field's very bytes.
        params.push({ name: part.fieldname, contentType: undefined, value: Buffer.from(String(part.value), 'latin1') });
      }
    }
  } catch (err) {
    // The parser's own words for a body that is not multipart (no boundary, cut short) are the
    // client's error; fastify's limits (FST_*) keep their 413.
    if (isTsError(err) || (err as { code?: string }).code?.startsWith('FST_')) throw err;
    throw tsError('TSS_ERR_HTTP_BAD_REQUEST', `Invalid multipart body: ${(err as Error).message}`);
  }
  return params;
}

/**
 * @module http/input
 * An HTTP request as a handler's input (spec §3.3): each multipart part or form field is a
 * parameter under its name; any other body is one parameter named `body` whose content type is
 * the request's MIME type. Every request header goes along, plus any the route adds; the
 * SageMaker and legacy routes put the query parameters first.
 */
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ServerConfig } from '../config/server-config.js';
import type { WireParam, WireRequest } from '../worker/protocol.js';
import { isTsError, tsError } from '../errors.js';

/** Lets a listener's prediction routes read multipart bodies, each part up to max_request_size. */
export async function acceptMultipart(app: FastifyInstance, config: ServerConfig): Promise<void> {
  const limit = config.maxRequestSize;
  await app.register(multipart, { limits: { fileSize: limit, fieldSize: limit, parts: 1000 }, throwFileSizeLimit: true });
}

export async function toWireRequest(request: FastifyRequest, extraHeaders: Record<string, string>, withQuery = false): Promise<WireRequest> {
  const params = await readParams(request);
  return {
    id: request.id,
    headers: { ...flatHeaders(request), ...extraHeaders },
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
    [values].flat().map((value) => ({ name, contentType: undefined, value: Buffer.from(value, 'utf8') })));
}

function flatHeaders(request: FastifyRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(request.headers)) {
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
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
    return [...new URLSearchParams(body.toString('utf8'))].map(([name, value]) => ({
      name, contentType: undefined, value: Buffer.from(value, 'utf8'),
    }));
  }
  return [{ name: 'body', contentType, value: body }];
}

async function readMultipart(request: FastifyRequest): Promise<WireParam[]> {
  const params: WireParam[] = [];
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        params.push({ name: part.fieldname, contentType: mimeType(part.mimetype), value: await part.toBuffer() });
      } else {
        params.push({ name: part.fieldname, contentType: undefined, value: Buffer.from(String(part.value), 'utf8') });
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

/**
 * @module http/input
 * An HTTP request as a handler's input (spec §3.3): each multipart part or form field is a
 * parameter under its name; any other body is one parameter named `body` whose content type is
 * the request's MIME type. Every request header goes along, plus any the route adds.
 */
import type { FastifyRequest } from 'fastify';
import type { WireParam, WireRequest } from '../worker/protocol.js';

export async function toWireRequest(request: FastifyRequest, extraHeaders: Record<string, string>): Promise<WireRequest> {
  return { id: request.id, headers: { ...flatHeaders(request), ...extraHeaders }, params: await readParams(request) };
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
  for await (const part of request.parts()) {
    if (part.type === 'file') {
      params.push({ name: part.fieldname, contentType: mimeType(part.mimetype), value: await part.toBuffer() });
    } else {
      params.push({ name: part.fieldname, contentType: undefined, value: Buffer.from(String(part.value), 'utf8') });
    }
  }
  return params;
}

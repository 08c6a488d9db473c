/**
 * @module http/reply
 * Bodies the server itself writes, in TorchServe's Gson style: pretty-printed with two spaces,
 * null fields left out, and a newline at the end.
 */
import type { FastifyReply } from 'fastify';
import type { TsError } from '../errors.js';

export function gson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (v === null ? undefined : v), 2) + '\n';
}

export function sendJson(reply: FastifyReply, status: number, value: unknown): FastifyReply {
  return reply.code(status).type('application/json').send(gson(value));
}

export function sendStatus(reply: FastifyReply, status: number, message: string): FastifyReply {
  return sendJson(reply, status, { status: message });
}

export function sendError(reply: FastifyReply, err: TsError): FastifyReply {
  return sendJson(reply, err.status, err.toJSON());
}

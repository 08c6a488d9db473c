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
  return sendJsonText(reply, status, gson(value));
}

function sendJsonText(reply: FastifyReply, status: number, json: string): FastifyReply {
  return reply.code(status).type('application/json').send(json);
}

export function sendStatus(reply: FastifyReply, status: number, message: string): FastifyReply {
  return sendJson(reply, status, { status: message });
}

/** An error's JSON; a 503 (a full queue, no worker in time) is load that passes, so it says when to retry. */
export function sendError(reply: FastifyReply, err: TsError, body = gson(err.toJSON())): FastifyReply {
  if (err.status === 503) reply.header('Retry-After', '1');
  return sendJsonText(reply, err.status, body);
}

const bodies = new WeakMap<TsError, string>();

/**
 * sendError for an error made once and sent again and again (a model's refusal under overload,
 * most of the requests then): its body is made once too.
 */
export function sendReusedError(reply: FastifyReply, err: TsError): FastifyReply {
  return sendError(reply, err, reusedBody(err));
}

/** The JSON body of an error made once and sent again and again, made once. */
export function reusedBody(err: TsError): string {
  let body = bodies.get(err);
  if (body === undefined) {
    body = gson(err.toJSON());
    bodies.set(err, body);
  }
  return body;
}

/**
 * Says in `Warning` headers (RFC 7234's code 299, "miscellaneous persistent warning") what a
 * request asked for that was not done as written, while the answer keeps TorchServe's body.
 * The text quotes the client's own parameters, so it is cut short and kept to printable ASCII.
 */
export function warn(reply: FastifyReply, messages: readonly string[]): void {
  if (messages.length === 0) return;
  const quoted = messages.map(
    (m) =>
      `299 tsserve "${m
        .slice(0, 200)
        .replace(/"/g, "'")
        .replace(/\\/g, '/')
        .replace(/[^\x20-\x7e]/g, '?')}"`,
  );
  reply.header('Warning', quoted.join(', '));
}

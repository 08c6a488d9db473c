/**
 * @module http/auth
 * The token checks of each listener (spec §4.8). A failed check is TorchServe's 400
 * InvalidKeyException, not a 401.
 */
import type { FastifyInstance } from 'fastify';
import type { TokenKind, TokenStore } from '../auth/tokens.js';
import { tsError } from '../errors.js';
import { documented } from './api-description.js';
import { sendJson } from './reply.js';

/** Every route of this plugin needs the `kind` key (when token authorization is on). */
export function requireToken(app: FastifyInstance, tokens: TokenStore | undefined, kind: TokenKind): void {
  if (!tokens) return;
  app.addHook('onRequest', async (request) => {
    if (!tokens.allows(kind, request.headers.authorization)) throw tsError('TSS_ERR_HTTP_INVALID_TOKEN');
  });
}

/** `/token?type=management|inference`: with the API key, a new key of that type. */
export async function tokenRoutes(app: FastifyInstance, deps: { readonly tokens: TokenStore }): Promise<void> {
  app.all('/token', documented('With the API key: a new management or inference key (type=management|inference)', ['GET', 'POST']), async (request, reply) => {
    const type = (request.query as { type?: string }).type;
    if (!deps.tokens.allowsApiKey(request.headers.authorization) || (type !== 'management' && type !== 'inference')) {
      throw tsError('TSS_ERR_HTTP_INVALID_API_KEY');
    }
    return sendJson(reply, 200, { [type]: deps.tokens.refresh(type) });
  });
}

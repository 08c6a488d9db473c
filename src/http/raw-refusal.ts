/**
 * @module http/raw-refusal
 * A prediction refused before Fastify sees it. Past capacity most requests are refusals, and
 * Fastify's request and reply objects, its router and its hooks made a refusal cost the front end
 * 1.8x what a bare node:http server's costs (docs/performance.md): CPU the workers then lacked.
 * So the inference listener's request handler first looks at what it can read without them: a
 * POST or PUT to `/predictions/{model}[/{version}]` or `/explanations/...` whose model is refusing
 * now (batching/admission.ts's earlyRefusal) is answered here, with the bytes the route would
 * write (TorchServe's 503 body, the listener's headers and a request id), counted (Requests5XX,
 * ts_inference_requests_total, ts_requests_rejected_total) and logged in the access log as the
 * route does. Anything else goes on to Fastify, which answers it as before: another route or
 * method, a path with escapes or an extra tail, the front end's warm-up, a body declared over
 * max_request_size (the route's 413), a key that does not pass
 * (its 400 is Fastify's to write), a model that takes the job, a listener that is stopping.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { TokenStore } from '../auth/tokens.js';
import type { ServerConfig } from '../config/server-config.js';
import type { TsError } from '../errors.js';
import type { Loggers } from '../log/loggers.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import type { ModelRegistry } from '../models/model-registry.js';
import { mayRefuseEarly } from './input.js';
import { accessLine, answerQueued, fixedHeaders, whenSent } from './listener.js';
import { lingerIfBodyUnread } from './lingering-close.js';
import { reusedBody } from './reply.js';

export interface RawRefusalDeps {
  readonly config: ServerConfig;
  readonly registry: ModelRegistry;
  readonly metrics: MetricsRegistry;
  readonly tokens: TokenStore | undefined;
  readonly loggers: Loggers;
}

/**
 * `/predictions/{model}` or `/predictions/{model}/{version}`, a trailing slash and a query allowed,
 * each name of characters a path needs no escape for: what the router would read as the same
 * model and version (a name with escapes, or a tail the handler gets as url_path, is the router's).
 */
const PREDICTION_PATH = /^\/(?:predictions|explanations)\/([\w.~-]+)(?:\/([\w.~-]+))?\/?(?:\?|$)/;

/**
 * A refusal's headers, its x-request-id's value (index 1) written anew for each answer (writeHead
 * reads the array at once and keeps nothing of it), and its body: made once per refusal.
 */
interface Written {
  readonly headers: string[];
  readonly body: string;
}

/** Puts the refusal in front of `server`'s request listeners (Fastify's): see the module's comment. */
export function refuseBeforeRouting(server: Server, deps: RawRefusalDeps): void {
  const routed = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  server.removeAllListeners('request');
  const refuse = refuser(server, deps);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (refuse(req, res)) return;
    for (const listener of routed) listener.call(server, req, res);
  });
}

/** Answers `req` with its model's refusal and says true; or says false, having done nothing. */
function refuser(server: Server, deps: RawRefusalDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  const fixed = Object.entries(fixedHeaders(deps.config)).flatMap(([name, value]) => [name.toLowerCase(), value]);
  const written = new WeakMap<TsError, Written>();
  const writtenFor = (err: TsError): Written => {
    let w = written.get(err);
    if (!w) {
      const body = reusedBody(err);
      w = {
        headers: [
          'x-request-id',
          '',
          ...fixed,
          'retry-after',
          '1',
          'content-type',
          'application/json; charset=utf-8',
          'content-length',
          String(Buffer.byteLength(body)),
        ],
        body,
      };
      written.set(err, w);
    }
    return w;
  };
  return (req, res) => {
    const began = performance.now();
    if ((req.method !== 'POST' && req.method !== 'PUT') || !server.listening) return false;
    const path = PREDICTION_PATH.exec(req.url ?? '');
    if (!path) return false;
    if (deps.tokens && !deps.tokens.allows('inference', req.headers.authorization)) return false;
    const refusal = mayRefuseEarly(req, deps, path[1]!, path[2]);
    if (!refusal) return false;
    answerQueued(res, deps);
    const { headers, body } = writtenFor(refusal);
    headers[1] = randomUUID();
    res.writeHead(503, headers);
    res.end(body);
    lingerIfBodyUnread(req);
    deps.metrics.response(503);
    whenSent(res, () => deps.loggers.access(accessLine(req, 503, performance.now() - began)));
    return true;
  };
}

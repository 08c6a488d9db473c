/**
 * @module http/api-description
 * `OPTIONS /` and `/api-description` (any method, no token): an OpenAPI 3.0.1 document of this
 * listener, built from the routes actually registered on it. A route is documented by an
 * `openapi` entry in its route config; routes without one (405 fallbacks) are left out. Any
 * other method on `/` is 405, GET too unless the listener answers it (http/kserve.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { tsError } from '../errors.js';
import { VERSION } from '../version.js';
import { sendJson } from './reply.js';

export interface RouteDoc {
  readonly summary: string;
  /** The methods to document; by default every method the route was registered with. */
  readonly methods?: readonly string[];
  /** The path as clients write it, when the route's pattern is not (`/v1/models/{model}:predict`). */
  readonly path?: string;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    openapi?: RouteDoc;
  }
}

/** Route options documenting a route: `app.get(url, documented('Describe ...'), handler)`. */
export function documented(summary: string, methods?: readonly string[], path?: string): { config: { openapi: RouteDoc } } {
  return { config: { openapi: { summary, ...(methods ? { methods } : {}), ...(path ? { path } : {}) } } };
}

interface Documented {
  readonly path: string;
  readonly methods: readonly string[];
  readonly doc: RouteDoc;
}

/**
 * What `GET /` answers on a listener that gives it a meaning: TorchServe's own listeners answer
 * 405, as its spec says; KServe's model server answers a liveness probe there.
 */
export type RootAnswer = (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>;

/** Collects this listener's documented routes; call before any route is registered. */
export function describeRoutes(app: FastifyInstance, root?: { summary: string; answer: RootAnswer }): void {
  const routes: Documented[] = [];
  app.addHook('onRoute', (route) => {
    const doc = route.config?.openapi;
    const methods = doc?.methods ?? [route.method].flat();
    // fastify adds a HEAD route beside every GET, with the same config.
    if (!doc || methods.every((m) => m === 'HEAD')) return;
    routes.push({ path: doc.path ?? route.url.replace(/:([^/]+)/g, '{$1}').replace(/\*$/, '{extra_path}'), methods, doc });
  });
  const send = async (_request: unknown, reply: FastifyReply): Promise<FastifyReply> => sendJson(reply, 200, openApi(routes));
  app.options('/', send);
  app.all('/api-description', send);
  if (root) app.get('/', documented(root.summary), root.answer);
  app.route({
    method: root ? ['POST', 'PUT', 'DELETE', 'PATCH'] : ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'],
    url: '/',
    handler: async () => {
      throw tsError('TSS_ERR_HTTP_METHOD_NOT_ALLOWED');
    },
  });
}

const LISTENER_INFO = {
  title: 'TorchServe APIs',
  description: 'TorchServe is a flexible and easy to use tool for serving deep learning models',
  version: VERSION,
};

function openApi(routes: readonly Documented[], info: Record<string, string> = LISTENER_INFO): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const entry = (paths[r.path] ??= {});
    const parameters = [...r.path.matchAll(/\{([^}]+)\}/g)].map((m) => ({ in: 'path', name: m[1], required: true, schema: { type: 'string' } }));
    for (const method of r.methods) {
      entry[method.toLowerCase()] = {
        summary: r.doc.summary,
        ...(parameters.length > 0 ? { parameters } : {}),
        responses: { 200: { description: 'OK' }, default: { description: 'Error: {"code", "type", "message"}' } },
      };
    }
  }
  return { openapi: '3.0.1', info, paths };
}

const route = (path: string, summary: string, ...methods: string[]): Documented => ({ path, methods, doc: { summary } });

/**
 * OPTIONS on a model's prediction or management path: the calls that model answers, as
 * TorchServe's per-model description lists them.
 */
export function modelApi(name: string, listener: 'inference' | 'management'): Record<string, unknown> {
  if (listener === 'inference') {
    const summary = `Predictions of ${name}; input and output formats are defined by its handler`;
    return openApi(
      [
        route(`/predictions/${name}`, summary, 'POST'),
        route('/v1/models/{model_name}:predict', summary, 'POST'),
        route('/v2/models/{model_name}/infer', summary, 'POST'),
      ],
      { title: `RESTful API for: ${name}`, version: '1.0.0' },
    );
  }
  return openApi(
    [
      route('/models/{model_name}', 'Describe, scale or unregister the default version', 'GET', 'PUT', 'DELETE'),
      route('/models/{model_name}/{model_version}', 'Describe, scale or unregister one version', 'GET', 'PUT', 'DELETE'),
      route('/models/{model_name}/{model_version}/set-default', 'Make this version the default', 'PUT'),
    ],
    { title: `RESTful Management API for: ${name}`, version: VERSION },
  );
}

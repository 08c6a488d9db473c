/**
 * @module http/management
 * The management API over REST: list, describe, register, scale, set-default, unregister. Each
 * route reads TorchServe's parameters (query or JSON body), calls the model service
 * (models/model-service.ts) and answers with its status code and body (spec §4).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TokenStore } from '../auth/tokens.js';
import { tsError } from '../errors.js';
import type { ModelService, StatusAnswer } from '../models/model-service.js';
import { documented, modelApi } from './api-description.js';
import { requireToken } from './auth.js';
import { mimeType } from './input.js';
import { modelReadiness } from './kserve.js';
import { boolParam, intParam, registerCall, requestParams, scaleCall, type Params } from './params.js';
import { sendJson, sendStatus, warn } from './reply.js';
import { workflowManagementRoutes } from './workflows.js';

export interface ManagementDeps {
  readonly tokens: TokenStore | undefined;
  readonly service: ModelService;
}

type Req = FastifyRequest<{ Params: { name?: string; version?: string } }>;

export async function managementRoutes(app: FastifyInstance, deps: ManagementDeps): Promise<void> {
  const { service } = deps;
  const { registry } = service;
  requireToken(app, deps.tokens, 'management');
  const params = (request: Req): Params => requestParams(request.query, request.body, mimeType(request.headers['content-type']));
  const customized = (request: Req): boolean => boolParam(params(request), 'customized', false);

  app.get('/models', documented('List the models (default versions), paged by limit and next_page_token'), async (request: Req, reply) => {
    const p = params(request);
    return sendJson(reply, 200, service.list(intParam(p, 'limit'), intParam(p, 'next_page_token')));
  });
  app.post(
    '/models',
    documented(
      'Register a model archive: url, model_name, handler, runtime, batch_size, max_batch_delay, initial_workers, synchronous, response_timeout, startup_timeout',
    ),
    async (request: Req, reply) => {
      service.requireModelApi();
      return sendAnswer(reply, await service.register(registerCall(params(request)), (warnings) => warn(reply, warnings)));
    },
  );

  app.get(
    '/models/:name',
    documented("Describe the default version of a model (customized=true adds the handler's own description)"),
    async (request: Req, reply) => sendJson(reply, 200, await service.describe(request.params.name!, undefined, customized(request))),
  );
  app.get('/models/:name/:version', documented('Describe one version of a model, or all of them with "all"'), async (request: Req, reply) => {
    const { name, version } = request.params as { name: string; version: string };
    return sendJson(reply, 200, await service.describe(name, version, version !== 'all' && customized(request)));
  });

  const scaleRoute = async (request: Req, reply: FastifyReply): Promise<FastifyReply> => {
    const p = params(request);
    const answer = await service.scale(request.params.name!, request.params.version ?? p.model_version, scaleCall(p), (warnings) => warn(reply, warnings));
    return sendAnswer(reply, answer);
  };
  app.put('/models/:name', documented('Scale workers: min_worker, max_worker, synchronous'), scaleRoute);
  app.put('/models/:name/:version', documented('Scale the workers of one version'), scaleRoute);

  app.put('/models/:name/:version/set-default', documented('Make this version the default'), async (request: Req, reply) => {
    const { name, version } = request.params as { name: string; version: string };
    return sendAnswer(reply, await service.setDefault(name, version));
  });

  const unregisterRoute = async (request: Req, reply: FastifyReply): Promise<FastifyReply> => {
    const { name, version } = request.params as { name: string; version?: string };
    return sendAnswer(reply, await service.unregister(name, version));
  };
  app.delete('/models/:name', documented('Unregister a model'), unregisterRoute);
  app.delete('/models/:name/:version', documented('Unregister one version of a model'), unregisterRoute);

  const describeApi = async (request: Req, reply: FastifyReply): Promise<FastifyReply> =>
    sendJson(reply, 200, modelApi(registry.get(request.params.name!, request.params.version).name, 'management'));
  app.options('/models/:name', describeApi);
  app.options('/models/:name/:version', describeApi);

  // KServe v1's readiness probe: ready while a worker has the default version loaded. On a listener
  // that also serves inference, the KServe v1 prediction route holds this path (http/kserve.ts).
  const readiness = { method: 'GET', url: '/v1/models/:name' } as const;
  if (!app.hasRoute(readiness)) {
    app.get(readiness.url, documented('KServe v1: is the model ready (a worker has its default version loaded)'), async (request: Req, reply) =>
      sendJson(reply, 200, modelReadiness(registry, request.params.name!)),
    );
  }

  workflowManagementRoutes(app);

  // Any other method on /models... is 405, as TorchServe answers.
  const notAllowed = async (): Promise<never> => {
    throw tsError('TSS_ERR_HTTP_METHOD_NOT_ALLOWED');
  };
  const served: Record<string, readonly string[]> = {
    '/models': ['GET', 'POST'],
    '/models/:name': ['GET', 'PUT', 'DELETE', 'OPTIONS'],
    '/models/:name/:version': ['GET', 'PUT', 'DELETE', 'OPTIONS'],
    '/models/:name/:version/set-default': ['PUT'],
    '/v1/models/:name': ['GET'],
  };
  for (const [url, methods] of Object.entries(served)) {
    const others = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'].filter((m) => !methods.includes(m) && !app.hasRoute({ method: m, url }));
    if (others.length > 0) app.route({ method: others as Array<'GET'>, url, handler: notAllowed });
  }
}

/** A management call's answer: its status text, with REST's status code for its outcome. */
function sendAnswer(reply: FastifyReply, answer: StatusAnswer): FastifyReply {
  return sendStatus(reply, STATUS_OF[answer.outcome], answer.message);
}

const STATUS_OF: Record<StatusAnswer['outcome'], number> = { done: 200, started: 202, partial: 206 };

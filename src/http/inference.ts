/**
 * @module http/inference
 * The inference listener's routes: /ping, /predictions and /explanations, SageMaker's
 * /invocations and /models/{m}/invoke, the legacy /{m}/predict, and the KServe routes
 * (http/kserve.ts). Each ends in http/predict.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ModelRegistry } from '../models/model-registry.js';
import { documented } from './api-description.js';
import { requireToken } from './auth.js';
import { kserveRoutes } from './kserve.js';
import { acceptMultipart } from './input.js';
import { enqueueRequest, refuseEarly, type InferenceDeps } from './predict.js';
import { sendStatus } from './reply.js';
import { workflowInferenceRoutes } from './workflows.js';

export type { InferenceDeps } from './predict.js';

interface PredictParams {
  model: string;
  version?: string;
  '*'?: string;
}

type PredictRequest = FastifyRequest<{ Params: PredictParams; Querystring: { model_name?: string } }>;

export async function inferenceRoutes(app: FastifyInstance, deps: InferenceDeps): Promise<void> {
  requireToken(app, deps.tokens, 'inference');
  await acceptMultipart(app, deps.config);

  app.all(
    '/ping',
    documented('Health of the server: Healthy, or Unhealthy when a model has fewer healthy workers than minWorkers', ['GET']),
    async (_request, reply) => {
      const healthy = deps.registry.healthy();
      return sendStatus(reply, healthy ? 200 : 500, healthy ? 'Healthy' : 'Unhealthy');
    },
  );

  const busy = { onRequest: refuseEarly<{ Params: PredictParams; Querystring: { model_name?: string } }>(deps) };
  for (const prefix of ['predictions', 'explanations'] as const) {
    const explain = prefix === 'explanations' ? 'True' : 'False';
    const handler = (request: PredictRequest, reply: FastifyReply): Promise<FastifyReply> => {
      const { model, version } = request.params;
      return enqueueRequest(request, reply, deps, { model, version, headers: { url_path: request.params['*'] ?? '', explain } });
    };
    const what = prefix === 'predictions' ? 'Predictions' : 'Explanations';
    const methods = ['POST', 'PUT'];
    app.all(`/${prefix}/:model`, { ...documented(`${what} of the default version of a model`, methods), ...busy }, handler);
    app.all(`/${prefix}/:model/:version`, { ...documented(`${what} of one version of a model`, methods), ...busy }, handler);
    app.all(`/${prefix}/:model/:version/*`, { ...documented(`${what}; the extra path reaches the handler as header url_path`, methods), ...busy }, handler);
  }

  // SageMaker: the model from the query, else the one model loaded at start-up, else a form field.
  const sagemaker = documented('SageMaker-style prediction; the model from ?model_name=, the only start-up model, or a model_name field', ['POST']);
  app.all('/invocations', sagemaker, (request: PredictRequest, reply) =>
    enqueueRequest(request, reply, deps, { model: request.query.model_name || onlyStartupModel(deps.registry), queryParams: true }),
  );
  app.all(
    '/models/:model/invoke',
    { ...documented('SageMaker-style prediction of the default version', ['POST']), ...busy },
    (request: PredictRequest, reply) => enqueueRequest(request, reply, deps, { model: request.params.model, queryParams: true }),
  );

  // The legacy form: query parameters reach the handler as inputs.
  const legacy = (request: PredictRequest, reply: FastifyReply): Promise<FastifyReply> =>
    enqueueRequest(request, reply, deps, { model: request.params.model, version: request.params.version, queryParams: true });
  app.all('/:model/predict', { ...documented('Legacy prediction of the default version; query parameters are inputs', ['POST']), ...busy }, legacy);
  app.all('/:model/:version/predict', { ...documented('Legacy prediction of one version; query parameters are inputs', ['POST']), ...busy }, legacy);

  kserveRoutes(app, deps);
  workflowInferenceRoutes(app);
}

function onlyStartupModel(registry: ModelRegistry): string | undefined {
  const names = new Set(
    registry
      .all()
      .filter((m) => m.spec.loadedAtStartup)
      .map((m) => m.name),
  );
  return names.size === 1 ? [...names][0] : undefined;
}

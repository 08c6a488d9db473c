/**
 * @module http/kserve
 * The KServe routes, as TorchServe serves them to KServe's model server:
 * `/v1/models/{m}:predict|:explain` and `/v2/models/{m}/infer|explain` are predictions of the
 * default version (the `kserve` / `kservev2` envelopes shape their bodies, handler/envelope.ts;
 * a v2 body in the binary tensor data extension's form is split into its parts, http/binary-tensors.ts),
 * and `GET /v1/models/{m}` says whether the model is ready. With `ts_open_inference_protocol=true`
 * the Open Inference Protocol's REST extras answer too: server health, server metadata, model
 * metadata and readiness (which TorchServe serves over gRPC only), and 501 for model versions,
 * which OIP does not serve yet.
 *
 * `kserveListenerRoutes` is the listener KServe's runtime sends traffic to (8080), which
 * TorchServe's KServe image serves with a wrapper process in front of TorchServe: all of the above
 * plus KServe's model server's `GET /v1/models` and its liveness, `GET /` (KSERVE_ROOT).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { tsError } from '../errors.js';
import { VERSION } from '../version.js';
import { modelMetadata } from '../models/model-metadata.js';
import type { ModelRegistry } from '../models/model-registry.js';
import { documented } from './api-description.js';
import { binaryRequestParams } from './binary-tensors.js';
import { requireToken } from './auth.js';
import { acceptMultipart } from './input.js';
import { enqueueRequest, refuseEarly, type InferenceDeps } from './predict.js';
import { sendJson } from './reply.js';

type ModelRequest = FastifyRequest<{ Params: { model: string } }>;

export function kserveRoutes(app: FastifyInstance, deps: InferenceDeps, options: { openInferenceProtocol: boolean } = deps.config): void {
  const explainHeader = (explain: boolean): Record<string, string> => ({ explain: explain ? 'True' : 'False' });

  // One segment holds the model and the verb, `mnist:predict`, so the route splits it itself;
  // without a verb, a GET is KServe v1's readiness probe.
  const v1Model = (request: FastifyRequest): { model: string } | undefined => {
    const [model, verb] = (request.params as { spec: string }).spec.split(':');
    return model && verb ? { model } : undefined;
  };
  app.all(
    '/v1/models/:spec',
    {
      ...documented('KServe v1 prediction of the default version (model:explain explains; GET model: is it ready)', ['POST'], '/v1/models/{model}:predict'),
      onRequest: refuseEarly(deps, v1Model),
    },
    async (request: FastifyRequest<{ Params: { spec: string } }>, reply) => {
      const [model, verb] = request.params.spec.split(':');
      if (model && verb === undefined && request.method === 'GET') return sendJson(reply, 200, modelReadiness(deps.registry, model));
      if (!model || (verb !== 'predict' && verb !== 'explain')) throw tsError('TSS_ERR_HTTP_NOT_FOUND');
      return enqueueRequest(request, reply, deps, { model, headers: explainHeader(verb === 'explain') });
    },
  );
  for (const verb of ['infer', 'explain'] as const) {
    const what = verb === 'infer' ? 'prediction' : 'explanation';
    app.all(
      `/v2/models/:model/${verb}`,
      { ...documented(`KServe v2 (Open Inference Protocol) ${what} of the default version`, ['POST']), onRequest: refuseEarly(deps) },
      (request: ModelRequest, reply) =>
        enqueueRequest(request, reply, deps, {
          model: request.params.model,
          headers: explainHeader(verb === 'explain'),
          readParams: () => binaryRequestParams(request, deps.registry.get(request.params.model), deps.config),
        }),
    );
  }
  if (options.openInferenceProtocol) openInferenceExtras(app, deps);
}

/**
 * `GET /` on the KServe listener: KServe's model server answers its liveness there, and KServe's
 * v1 client (`is_server_live`) reads `status`. TorchServe's own listeners keep their 405.
 */
export const KSERVE_ROOT = {
  summary: 'KServe v1: is the server live',
  answer: async (_request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => sendJson(reply, 200, { status: 'alive' }),
};

/** The KServe listener (8080): what KServe's model server answers in front of TorchServe. */
export async function kserveListenerRoutes(app: FastifyInstance, deps: InferenceDeps): Promise<void> {
  requireToken(app, deps.tokens, 'inference');
  await acceptMultipart(app, deps.config);
  app.get('/v1/models', documented('KServe v1: the models served'), async (_request, reply) =>
    sendJson(reply, 200, { models: deps.registry.defaults().map((m) => m.name) }),
  );
  kserveRoutes(app, deps, { openInferenceProtocol: true });
}

/** KServe's readiness of a model: its default version can answer now (a worker has loaded it); a failed restore never. */
export function modelReadiness(registry: ModelRegistry, name: string): { name: string; ready: boolean } {
  if (!registry.find(name) && registry.failedRestore(name)) return { name, ready: false };
  const model = registry.get(name);
  return { name: model.name, ready: model.serving };
}

function openInferenceExtras(app: FastifyInstance, deps: InferenceDeps): void {
  const answer =
    (body: Record<string, unknown>, status = 200) =>
    async (_request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> =>
      sendJson(reply, status, body);
  // A readiness probe: 503 until every model has its workers (and, as fastify answers while the
  // server closes, once a drain has begun), so no traffic is routed to a server that cannot serve.
  app.all('/v2/health/ready', documented('Open Inference Protocol: is the server ready (every model has its workers)', ['GET']), async (_request, reply) => {
    const ready = deps.registry.serving();
    return sendJson(reply, ready ? 200 : 503, { ready });
  });
  app.all('/v2/health/live', documented('Open Inference Protocol: is the server live', ['GET']), answer({ live: true }));
  // "extenstion" is how TorchServe spells the key; clients written against it read that name.
  app.all(
    '/v2',
    documented('Open Inference Protocol: server metadata', ['GET']),
    answer({ name: 'Torchserve', version: VERSION, extenstion: ['kserve', 'kubeflow'] }),
  );
  app.all('/v2/models/:model/versions/*', answer({ error: 'Model versioning is not yet supported.' }, 501));
  // KServe clients ask these two before they infer; TorchServe serves them over gRPC only.
  app.get('/v2/models/:model', documented('Open Inference Protocol: model metadata, its tensors from the handler'), async (request: ModelRequest, reply) =>
    sendJson(reply, 200, await modelMetadata(deps.registry, deps.registry.get(request.params.model))),
  );
  app.get('/v2/models/:model/ready', documented('Open Inference Protocol: is the model ready'), async (request: ModelRequest, reply) =>
    sendJson(reply, 200, modelReadiness(deps.registry, request.params.model)),
  );
}

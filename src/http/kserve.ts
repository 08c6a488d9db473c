/**
 * @module http/kserve
 * The inference listener's KServe routes, as TorchServe serves them to KServe's model server:
 * `/v1/models/{m}:predict|:explain` and `/v2/models/{m}/infer|explain` are predictions of the
 * default version (the `kserve` / `kservev2` envelopes shape their bodies, handler/envelope.ts).
 * With `ts_open_inference_protocol=true` the Open Inference Protocol's REST extras answer too:
 * server health, server metadata, model metadata and readiness (which TorchServe serves over
 * gRPC only), and 501 for model versions, which OIP does not serve yet.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { tsError } from '../errors.js';
import { VERSION } from '../version.js';
import { modelMetadata } from '../wlm/model-metadata.js';
import { documented } from './api-description.js';
import { predict, type InferenceDeps } from './predict.js';
import { sendJson } from './reply.js';

type ModelRequest = FastifyRequest<{ Params: { model: string } }>;

export function kserveRoutes(app: FastifyInstance, deps: InferenceDeps): void {
  const explainHeader = (explain: boolean): Record<string, string> => ({ explain: explain ? 'True' : 'False' });

  // One segment holds the model and the verb, `mnist:predict`, so the route splits it itself.
  app.all('/v1/models/:spec', documented('KServe v1 prediction of the default version (model:explain explains)', ['POST'], '/v1/models/{model}:predict'),
    (request: FastifyRequest<{ Params: { spec: string } }>, reply) => {
      const [model, verb] = request.params.spec.split(':');
      if (!model || (verb !== 'predict' && verb !== 'explain')) throw tsError('TSS_ERR_HTTP_NOT_FOUND');
      return predict(request, reply, deps, { model, headers: explainHeader(verb === 'explain') });
    });
  for (const verb of ['infer', 'explain'] as const) {
    const what = verb === 'infer' ? 'prediction' : 'explanation';
    app.all(`/v2/models/:model/${verb}`, documented(`KServe v2 (Open Inference Protocol) ${what} of the default version`, ['POST']),
      (request: ModelRequest, reply) => predict(request, reply, deps, { model: request.params.model, headers: explainHeader(verb === 'explain') }));
  }
  if (deps.config.openInferenceProtocol) openInferenceExtras(app, deps);
}

function openInferenceExtras(app: FastifyInstance, deps: InferenceDeps): void {
  const answer = (body: Record<string, unknown>, status = 200) => async (_request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> =>
    sendJson(reply, status, body);
  app.all('/v2/health/ready', documented('Open Inference Protocol: is the server ready', ['GET']), answer({ ready: true }));
  app.all('/v2/health/live', documented('Open Inference Protocol: is the server live', ['GET']), answer({ live: true }));
  // "extenstion" is how TorchServe spells the key; clients written against it read that name.
  app.all('/v2', documented('Open Inference Protocol: server metadata', ['GET']), answer({ name: 'Torchserve', version: VERSION, extenstion: ['kserve', 'kubeflow'] }));
  app.all('/v2/models/:model/versions/*', answer({ error: 'Model versioning is not yet supported.' }, 501));
  // KServe clients ask these two before they infer; TorchServe serves them over gRPC only.
  app.get('/v2/models/:model', documented('Open Inference Protocol: model metadata, its tensors from the handler'),
    async (request: ModelRequest, reply) => sendJson(reply, 200, await modelMetadata(deps.registry, deps.registry.get(request.params.model))));
  app.get('/v2/models/:model/ready', documented('Open Inference Protocol: is the model ready'), async (request: ModelRequest, reply) => {
    const model = deps.registry.get(request.params.model);
    return sendJson(reply, 200, { name: model.name, ready: model.ready });
  });
}

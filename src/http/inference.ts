/**
 * @module http/inference
 * The inference API: /ping, /predictions and /explanations. A prediction becomes a Job on the
 * model's queue; the Job answers through a sink bound to this reply, streaming intermediate
 * answers as HTTP chunks when the handler sends any.
 */
import { PassThrough } from 'node:stream';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerConfig } from '../config/server-config.js';
import { tsError, type TsError } from '../errors.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import { Job, type JobResponse, type JobSink } from '../wlm/job.js';
import type { Model } from '../wlm/model.js';
import type { ModelRegistry } from '../wlm/model-registry.js';
import type { TokenStore } from '../auth/tokens.js';
import { documented } from './api-description.js';
import { requireToken } from './auth.js';
import { toWireRequest } from './input.js';
import { gson, sendError, sendStatus } from './reply.js';

export interface InferenceDeps {
  readonly config: ServerConfig;
  readonly tokens: TokenStore | undefined;
  readonly registry: ModelRegistry;
  readonly metrics: MetricsRegistry;
}

interface PredictParams {
  model: string;
  version?: string;
  '*'?: string;
}

export async function inferenceRoutes(app: FastifyInstance, deps: InferenceDeps): Promise<void> {
  requireToken(app, deps.tokens, 'inference');
  const limit = deps.config.maxRequestSize;
  await app.register(multipart, {
    limits: { fileSize: limit, fieldSize: limit, parts: 1000 },
    throwFileSizeLimit: true,
  });

  app.all('/ping', documented('Health of the server: Healthy, or Unhealthy when a model has fewer healthy workers than minWorkers', ['GET']), async (_request, reply) => {
    const healthy = deps.registry.defaults().every((m) => m.pool.healthyCount() >= m.settings.minWorkers);
    return sendStatus(reply, healthy ? 200 : 500, healthy ? 'Healthy' : 'Unhealthy');
  });

  for (const prefix of ['predictions', 'explanations'] as const) {
    const explain = prefix === 'explanations' ? 'True' : 'False';
    const handler = (request: FastifyRequest<{ Params: PredictParams }>, reply: FastifyReply): Promise<FastifyReply> =>
      predict(request, reply, deps, explain);
    const what = prefix === 'predictions' ? 'Predictions' : 'Explanations';
    const methods = ['POST', 'PUT'];
    app.all(`/${prefix}/:model`, documented(`${what} of the default version of a model`, methods), handler);
    app.all(`/${prefix}/:model/:version`, documented(`${what} of one version of a model`, methods), handler);
    app.all(`/${prefix}/:model/:version/*`, documented(`${what}; the extra path reaches the handler as header url_path`, methods), handler);
  }
}

async function predict(
  request: FastifyRequest<{ Params: PredictParams }>,
  reply: FastifyReply,
  deps: InferenceDeps,
  explain: 'True' | 'False',
): Promise<FastifyReply> {
  const { model: name, version } = request.params;
  const model = deps.registry.get(name, version);
  const versionLabel = version ?? 'default';
  deps.metrics.inferenceRequest(name, versionLabel);
  const wire = await toWireRequest(request, { url_path: request.params['*'] ?? '', explain });
  const job: Job = new Job(wire, replySink(reply, (latencyUs) => {
    deps.metrics.inferenceDone(name, versionLabel, latencyUs);
    if (job.dequeuedAt !== undefined) deps.metrics.dequeued(name, versionLabel, Math.round((job.dequeuedAt - job.arrivedAt) * 1000));
  }));
  if (!model.submit(job)) {
    deps.metrics.rejected(model.name, model.version);
    // The queue is full or the workers are (re)starting: both pass, so tell the client when to retry.
    reply.header('Retry-After', '1');
    throw noWorker(model, version);
  }
  return reply;
}

function noWorker(model: Model, version: string | undefined): TsError {
  const err = tsError('TSS_ERR_WORKER_NONE_AVAILABLE', model.name);
  // With a version in the URL TorchServe words it `Model "m" Version 1.0" has ...` (stray quote kept).
  if (version !== undefined) err.message = err.message.replace(`Model "${model.name}"`, `Model "${model.name}" Version ${version}"`);
  return err;
}

/** Writes a job's answer to this reply: one body, or chunks when the handler streams. */
function replySink(reply: FastifyReply, onSuccess: (latencyUs: number) => void): JobSink {
  const started = performance.now();
  let stream: PassThrough | undefined;
  const applyHead = (r: JobResponse): void => {
    reply.code(r.status);
    if (r.phrase) reply.raw.statusMessage = r.phrase;
    for (const [k, v] of Object.entries(r.headers)) reply.header(k, v);
  };
  return {
    intermediate(r) {
      if (!stream) {
        applyHead(r);
        stream = new PassThrough();
        reply.send(stream);
      }
      stream.write(r.body);
    },
    respond(r) {
      onSuccess(Math.round((performance.now() - started) * 1000));
      if (stream) {
        stream.end(r.body);
        return;
      }
      applyHead(r);
      reply.send(Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength));
    },
    fail(err) {
      if (stream) stream.end(gson(err.toJSON()));
      else sendError(reply, err);
    },
  };
}

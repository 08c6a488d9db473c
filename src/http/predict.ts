/**
 * @module http/predict
 * Where every prediction route ends (/predictions, /explanations, KServe, SageMaker, legacy):
 * the request becomes a Job on the model's queue, and the Job answers through a sink bound to
 * this reply, streaming intermediate answers as HTTP chunks when the handler sends any. OPTIONS
 * on any of these routes describes the model instead (TorchServe's per-model OpenAPI).
 */
import { PassThrough } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { TokenStore } from '../auth/tokens.js';
import type { ServerConfig } from '../config/server-config.js';
import { tsError, type TsError } from '../errors.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import { Job, type JobResponse, type JobSink } from '../wlm/job.js';
import type { Model } from '../wlm/model.js';
import type { ModelRegistry } from '../wlm/model-registry.js';
import { modelApi } from './api-description.js';
import { stringParam, toWireRequest } from './input.js';
import { gson, sendError, sendJson } from './reply.js';

export interface InferenceDeps {
  readonly config: ServerConfig;
  readonly tokens: TokenStore | undefined;
  readonly registry: ModelRegistry;
  readonly metrics: MetricsRegistry;
}

export interface PredictTarget {
  /** The model; when undefined, the request's `model_name` parameter names it. */
  readonly model: string | undefined;
  readonly version?: string;
  /** Headers the route adds for the handler (`explain`, `url_path`). */
  readonly headers?: Record<string, string>;
  /** Query parameters become handler parameters (SageMaker and legacy routes). */
  readonly queryParams?: boolean;
}

export async function predict(request: FastifyRequest, reply: FastifyReply, deps: InferenceDeps, target: PredictTarget): Promise<FastifyReply> {
  const wire = await toWireRequest(request, target.headers ?? {}, target.queryParams === true);
  const name = target.model || stringParam(wire, 'model_name');
  if (!name) throw tsError('TSS_ERR_HTTP_BAD_REQUEST', 'Parameter model_name is required.');
  const model = deps.registry.get(name, target.version);
  if (request.method === 'OPTIONS') return sendJson(reply, 200, modelApi(model.name, 'inference'));
  const versionLabel = target.version ?? 'default';
  deps.metrics.inferenceRequest(name, versionLabel);
  const job: Job = new Job(wire, replySink(reply, (latencyUs) => {
    deps.metrics.inferenceDone(name, versionLabel, latencyUs);
    if (job.dequeuedAt !== undefined) deps.metrics.dequeued(name, versionLabel, Math.round((job.dequeuedAt - job.arrivedAt) * 1000));
  }));
  if (!model.submit(job)) {
    deps.metrics.rejected(model.name, model.version);
    // The queue is full or the workers are (re)starting: both pass, so tell the client when to retry.
    reply.header('Retry-After', '1');
    throw noWorker(model, target.version);
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

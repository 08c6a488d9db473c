/**
 * @module wlm/predict
 * Where every front end (HTTP, gRPC) hands a prediction to a model: the request becomes a Job on
 * the model's queue, counted in the inference metrics, answering through the front end's sink.
 */
import { tsError, type TsError } from '../errors.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import type { WireRequest } from '../worker/protocol.js';
import { Job, type JobSink } from './job.js';
import type { Model } from './model.js';

/**
 * Queues the request on `model`; `version` is the one the client asked for (metrics say
 * `default` without one). Throws TorchServe's 503 when the model cannot take it. A `quiet` job
 * (the front end's warm-up, http/warm-up.ts) counts in no metric, refused or answered.
 */
export function submitPrediction(
  metrics: MetricsRegistry,
  model: Model,
  version: string | undefined,
  request: WireRequest,
  sink: JobSink,
  quiet = false,
): void {
  const job = quiet ? new Job(request, sink, true) : countedJob(metrics, model, version ?? 'default', request, sink);
  if (!model.submit(job)) throw quiet ? noWorker(model, version) : refused(metrics, model, version);
}

function countedJob(metrics: MetricsRegistry, model: Model, versionLabel: string, request: WireRequest, sink: JobSink): Job {
  metrics.inferenceRequest(model.name, versionLabel);
  const started = performance.now();
  const job: Job = new Job(request, {
    intermediate: (r) => sink.intermediate(r),
    respond(r) {
      metrics.inferenceDone(model.name, versionLabel, Math.round((performance.now() - started) * 1000));
      if (job.dequeuedAt !== undefined) metrics.dequeued(model.name, versionLabel, Math.round((job.dequeuedAt - job.arrivedAt) * 1000));
      sink.respond(r);
    },
    fail: (err) => sink.fail(err),
  });
  return job;
}

/**
 * The 503 of a prediction for `model` when it takes no job now (counted as submitPrediction counts
 * a refusal), before the request has been read into a job; undefined when it would take one.
 */
export function refuseIfBusy(metrics: MetricsRegistry, model: Model, version: string | undefined): TsError | undefined {
  if (model.accepting) return undefined;
  metrics.inferenceRequest(model.name, version ?? 'default');
  return refused(metrics, model, version);
}

/** Counts the refusal; its 503. */
function refused(metrics: MetricsRegistry, model: Model, version: string | undefined): TsError {
  metrics.rejected(model.name, model.version);
  return noWorker(model, version);
}

/**
 * Each model's refusal, made once per version asked for: under overload most requests are refused,
 * and a new Error each time (its stack captured) was a twentieth of the front end's work.
 */
const refusals = new WeakMap<Model, Map<string | undefined, TsError>>();

function noWorker(model: Model, version: string | undefined): TsError {
  let known = refusals.get(model);
  if (!known) {
    known = new Map();
    refusals.set(model, known);
  }
  let err = known.get(version);
  if (err) return err;
  err = tsError('TSS_ERR_WORKER_NONE_AVAILABLE', model.name);
  // With a version in the URL TorchServe words it `Model "m" Version 1.0" has ...` (stray quote kept).
  if (version !== undefined) err.message = err.message.replace(`Model "${model.name}"`, `Model "${model.name}" Version ${version}"`);
  known.set(version, err);
  return err;
}

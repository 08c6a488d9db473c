/**
 * @module batching/admission
 * Where every front end (HTTP, gRPC) hands a prediction to a model: the request is enqueued as a
 * Job on the model's queue, counted in the inference metrics, answering through the front end's
 * sink; or it is refused with TorchServe's 503, counted, before its body is read (earlyRefusal) or
 * after (enqueuePrediction).
 */
import { tsError, type TsError } from '../errors.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import type { WireRequest } from '../protocol/messages.js';
import { Job, type JobSink } from './job.js';

/** A model version as admission sees it: models/model.ts's Model. */
export interface AdmissionTarget {
  readonly name: string;
  readonly version: string;
  /** A job enqueued now would be refused: the caller answers 503. */
  readonly refusing: boolean;
  /** False when the job is refused. */
  enqueue(job: Job): boolean;
  /** A client's prediction was refused: load its workers may grow for (workers/scaler.ts). */
  refused(): void;
}

/**
 * Enqueues the request on `model`; `version` is the one the client asked for (metrics say
 * `default` without one). Throws TorchServe's 503 when the model refuses it. A `quiet` job
 * (the front end's warm-up, http/warm-up.ts) counts in no metric, refused or answered, and is
 * not traced. `arrivedAt` (performance.now()'s clock): when the request arrived, before its body
 * was read, where ts_request_seconds and the request's span begin. Answers the job.
 */
export function enqueuePrediction(
  metrics: MetricsRegistry,
  model: AdmissionTarget,
  version: string | undefined,
  request: WireRequest,
  sink: JobSink,
  quiet = false,
  arrivedAt = performance.now(),
): Job {
  const job = quiet ? new Job(request, sink, true) : countedJob(metrics, model, version ?? 'default', request, sink, arrivedAt);
  if (model.enqueue(job)) return job;
  const err = quiet ? refusal(model, version) : countedRefusal(metrics, model, version);
  job.trace?.end(err.status, err.message);
  throw err;
}

function countedJob(metrics: MetricsRegistry, model: AdmissionTarget, versionLabel: string, request: WireRequest, sink: JobSink, arrivedAt: number): Job {
  metrics.inferenceRequest(model.name, versionLabel);
  const started = performance.now();
  const job: Job = new Job(request, {
    intermediate: (r) => sink.intermediate(r),
    respond(r) {
      metrics.inferenceDone(model.name, versionLabel, Math.round((performance.now() - started) * 1000));
      if (job.dequeuedAt !== undefined) metrics.dequeued(model.name, versionLabel, Math.round((job.dequeuedAt - job.arrivedAt) * 1000));
      sink.respond(r);
      answered(metrics, model, job, arrivedAt, r.status);
    },
    fail(err, headers) {
      sink.fail(err, headers);
      answered(metrics, model, job, arrivedAt, err.status, err.message);
    },
  });
  // The front end puts the trace in its answer's head and its access log (job.trace.header).
  if (metrics.tracing) {
    job.trace = metrics.tracing.startRequest(model, job.id, request.headers, arrivedAt);
    sink.traced?.(job.trace);
  }
  return job;
}

/** The job's answer is written: ts_request_seconds, and its span's end when traced. */
function answered(metrics: MetricsRegistry, model: AdmissionTarget, job: Job, arrivedAt: number, status: number, message?: string): void {
  metrics.requestAnswered(model.name, model.version, (performance.now() - arrivedAt) / 1000);
  job.trace?.end(status, message);
}

/**
 * The 503 of a prediction for `model` when it is refusing now (counted as enqueuePrediction counts
 * a refusal), before the request has been read into a job; undefined when it would be enqueued.
 */
export function earlyRefusal(metrics: MetricsRegistry, model: AdmissionTarget, version: string | undefined): TsError | undefined {
  if (!model.refusing) return undefined;
  metrics.refusedEarly(model, version ?? 'default');
  model.refused();
  return refusal(model, version);
}

/** Counts the refusal; its 503. */
function countedRefusal(metrics: MetricsRegistry, model: AdmissionTarget, version: string | undefined): TsError {
  metrics.refused(model.name, model.version);
  model.refused();
  return refusal(model, version);
}

/**
 * Each model's refusal, made once per version asked for: under overload most requests are refused,
 * and a new Error each time (its stack captured) was a twentieth of the front end's work.
 */
const refusals = new WeakMap<AdmissionTarget, Map<string | undefined, TsError>>();

function refusal(model: AdmissionTarget, version: string | undefined): TsError {
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

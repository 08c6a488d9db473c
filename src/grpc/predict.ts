/**
 * @module grpc/predict
 * What every gRPC inference service does with a prediction (TorchServe's, the Open Inference
 * Protocol's, the stateful stream): enqueue it on its model with the call's metadata as headers,
 * and turn a failed answer into the call's status and message.
 */
import { randomUUID } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';
import type { SequenceHeaders } from '../config/server-config.js';
import { isTsError, type TsError } from '../errors.js';
import { handlerHeaders, type JobResponse, type JobSink } from '../batching/job.js';
import type { Model } from '../models/model.js';
import { enqueuePrediction } from '../batching/admission.js';
import type { WireParam } from '../protocol/messages.js';
import type { RequestTrace, TracedModel } from '../metrics/tracing.js';
import { clientGone, GrpcFailure, grpcStatusOf, noteTraceId, traceNoted, type PredictionCall } from './calls.js';
import type { GrpcDeps } from './deps.js';

/**
 * Enqueues a gRPC call's prediction on its model's queue; `version` "" is the default one;
 * `headers` as the handler will see them (handlerHeaders). Throws TsErrors.
 */
export function enqueueCall(
  deps: GrpcDeps,
  name: string,
  version: string,
  params: WireParam[],
  headers: Record<string, string>,
  sink: JobSink,
  call?: PredictionCall,
): void {
  const model: Model = deps.registry.get(name, version || undefined);
  const request = { id: randomUUID(), headers: handlerHeaders(headers, deps.tokens !== undefined), params };
  // Told before the job is enqueued: a refused prediction's trace reaches the call too.
  const tracedSink: JobSink = call ? { ...sink, traced: (trace) => traced(call, trace, deps.metrics.tracing?.header) } : sink;
  const job = enqueuePrediction(deps.metrics, model, version || undefined, request, tracedSink);
  // A stateful model's answer may name a sequence no one else knows: one to a call gone names it to no one.
  if (call && model.stateful) job.clientGone = () => clientGone(call);
}

/**
 * A stream's message that failed before it was a prediction (its model unknown, no sequence named
 * or opened, undecodable) is traced as a prediction answered with its error, when the stream has
 * no trace yet: the stream's response metadata goes with its first answer, this failure, and a
 * later prediction's trace could no longer go in it.
 */
export function traceFailedMessage(deps: GrpcDeps, call: PredictionCall, model: TracedModel, headers: Record<string, string>, err: unknown): void {
  const tracing = deps.metrics.tracing;
  if (!tracing || traceNoted(call)) return;
  const trace = tracing.startRequest(model, randomUUID(), headers, performance.now());
  trace.end(isTsError(err) ? err.status : 400, err instanceof Error ? err.message : String(err));
  traced(call, trace, tracing.header);
}

/**
 * A traced call's response metadata carries its trace context as REST's head does
 * (otel_trace_header), sent now, before any answer; its access-log line, its trace id. Metadata
 * goes once per call: a stream's (StreamPredictions2) is its first traced prediction's.
 */
function traced(call: PredictionCall, { traceId, header: value }: RequestTrace, header: string | undefined): void {
  if (!noteTraceId(call, traceId) || !header) return;
  const metadata = new Metadata();
  metadata.set(header, value);
  call.sendMetadata(metadata);
}

/**
 * A TorchServe request's `input` map as handler parameters, each bytes without a content type. An
 * entry without its value field is proto3's default, empty bytes, which the decoder gives as `[]`.
 */
export function inputParams(input: Record<string, Buffer | readonly number[]>): WireParam[] {
  return Object.entries(input).map(([name, value]) => ({ name, contentType: undefined, value: Buffer.isBuffer(value) ? value : Buffer.from(value) }));
}

/** The call's text metadata, as request headers. */
export function headersOf(metadata: Metadata): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata.getMap())) if (typeof value === 'string') headers[key] = value;
  return headers;
}

/**
 * A handler's answer with an error status; an error body `{code, type, message}` gives its message.
 * Its trailers name the sequence its headers name (sequenceTrailers).
 */
export function answerFailure(r: JobResponse, sequenceHeader: string): GrpcFailure {
  const text = Buffer.from(r.body).toString('utf8');
  let message = text;
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === 'string') message = body.message;
  } catch {
    // Not JSON: the text is the message.
  }
  return new GrpcFailure(grpcStatusOf(r.status), message, sequenceTrailers(r.headers, sequenceHeader));
}

/** A failed prediction (JobSink.fail's error and server headers) as the call's status, its trailers naming the sequence (sequenceTrailers). */
export function predictionFailure(err: TsError, headers: Readonly<Record<string, string>> | undefined, sequenceHeader: string): GrpcFailure {
  return GrpcFailure.of(err, sequenceTrailers(headers, sequenceHeader));
}

/** TorchServe's PredictionResponse: an answer, and the sequence (a stateful model's) its headers name. */
export interface PredictionResponse {
  prediction: Buffer;
  sequence_id?: string;
}

/** An answer (a streamed part, the final one) as a PredictionResponse. */
export function predictionMessage(r: JobResponse, sequenceHeader: string): PredictionResponse {
  const id = r.headers[sequenceHeader];
  return { prediction: Buffer.from(r.body), ...(id === undefined ? {} : { sequence_id: id }) };
}

/**
 * A failed prediction's trailers: the sequence (a stateful model's) its answer's headers name, for
 * a client whose call opened a sequence to continue or end it (review-16 F5); none for any other.
 */
export function sequenceTrailers(headers: Readonly<Record<string, string>> | undefined, sequenceHeader: string): Record<string, string> {
  const id = headers?.[sequenceHeader];
  return id === undefined ? {} : { [sequenceHeader]: id };
}

/** The message fields of any of TorchServe's prediction methods that a sequence takes, and the flags of its input. */
interface SequenceFields {
  readonly input: Record<string, Buffer>;
  readonly sequence_id?: string;
}

/** The sequence headers of a message of any of TorchServe's prediction methods: the sequence its `sequence_id` names, and its end when its input says so. */
export function namedSequence(request: SequenceFields, names: SequenceHeaders): Record<string, string> {
  const headers: Record<string, string> = {};
  if (request.sequence_id) headers[names.id] = request.sequence_id;
  if (inputFlag(request, names.end)) headers[names.end] = 'true';
  return headers;
}

/** Whether the message's input `name` is "true" (a sequence's start or end). */
export function inputFlag(request: Pick<SequenceFields, 'input'>, name: string): boolean {
  return request.input[name]?.toString('utf8').toLowerCase() === 'true';
}

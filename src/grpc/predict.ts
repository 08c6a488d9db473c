/**
 * @module grpc/predict
 * What every gRPC inference service does with a prediction (TorchServe's, the Open Inference
 * Protocol's, the stateful stream): enqueue it on its model with the call's metadata as headers,
 * and turn a failed answer into the call's status and message.
 */
import { randomUUID } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';
import type { TsError } from '../errors.js';
import { handlerHeaders, type JobResponse, type JobSink } from '../batching/job.js';
import type { Model } from '../models/model.js';
import { enqueuePrediction } from '../batching/admission.js';
import type { WireParam } from '../protocol/messages.js';
import { GrpcFailure, grpcStatusOf, noteTraceId, type TracedCall } from './calls.js';
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
  call?: TracedCall,
): void {
  const model: Model = deps.registry.get(name, version || undefined);
  const request = { id: randomUUID(), headers: handlerHeaders(headers, deps.tokens !== undefined), params };
  const { trace } = enqueuePrediction(deps.metrics, model, version || undefined, request, sink);
  if (trace && call) traced(call, trace.traceId, deps.metrics.tracing?.header, trace.header);
}

/**
 * A traced call's response metadata carries its trace context as REST's head does
 * (otel_trace_header), sent now, before any answer; its access-log line, its trace id. Metadata
 * goes once per call: a stream's (StreamPredictions2) is its first traced prediction's.
 */
function traced(call: TracedCall, traceId: string, header: string | undefined, value: string): void {
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

/** A handler's answer with an error status; an error body `{code, type, message}` gives its message. */
export function answerFailure(r: JobResponse): GrpcFailure {
  const text = Buffer.from(r.body).toString('utf8');
  let message = text;
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === 'string') message = body.message;
  } catch {
    // Not JSON: the text is the message.
  }
  return new GrpcFailure(grpcStatusOf(r.status), message);
}

export function predictionFailure(err: TsError): GrpcFailure {
  return GrpcFailure.of(err);
}

/**
 * @module grpc/inference
 * TorchServe's gRPC inference service: Ping, Predictions (the final answer), StreamPredictions
 * (each intermediate answer of a streaming handler, then the final one). Each `input` map entry
 * is one handler parameter without a content type, so it arrives as bytes. Errors are TorchServe's:
 * a missing model name, an unknown model or version and a full queue are INTERNAL with the REST
 * message; a failed prediction maps its HTTP status. StreamPredictions2, for stateful models,
 * is in grpc/sequence-stream.ts.
 */
import { randomUUID } from 'node:crypto';
import { status, type Metadata, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { TsError } from '../errors.js';
import { withoutJobKind, type JobResponse, type JobSink } from '../wlm/job.js';
import type { Model } from '../wlm/model.js';
import { submitPrediction } from '../wlm/predict.js';
import type { WireParam } from '../worker/protocol.js';
import { GrpcFailure, grpcStatusOf, serverStream, unary } from './calls.js';
import { sequenceStream } from './sequence-stream.js';
import type { GrpcDeps } from './server.js';

interface PredictionsRequest {
  model_name: string;
  model_version: string;
  input: Record<string, Buffer>;
}

interface PredictionResponse {
  prediction: Buffer;
}

const SERVICE = 'org.pytorch.serve.grpc.inference.InferenceAPIsService';

export function inferenceService(deps: GrpcDeps): UntypedServiceImplementation {
  return {
    Ping: unary(deps, 'inference', `${SERVICE}/Ping`, async () => ({
      health: JSON.stringify({ status: deps.registry.healthy() ? 'Healthy' : 'Unhealthy' }, null, 2),
    })),
    Predictions: unary<PredictionsRequest, PredictionResponse>(deps, 'inference', `${SERVICE}/Predictions`, (request, call) =>
      new Promise((resolve, reject) => {
        predict(deps, request, call.metadata, {
          intermediate: () => {},
          respond: (r) => (r.status >= 400 ? reject(answerFailure(r)) : resolve({ prediction: Buffer.from(r.body) })),
          fail: (err) => reject(predictionFailure(err)),
        });
      })),
    StreamPredictions: serverStream<PredictionsRequest, PredictionResponse>(deps, 'inference', `${SERVICE}/StreamPredictions`, (call) =>
      new Promise((resolve, reject) => {
        const write = (r: JobResponse): boolean => call.write({ prediction: Buffer.from(r.body) });
        predict(deps, call.request, call.metadata, {
          intermediate: write,
          respond: (r) => {
            if (r.status >= 400) return reject(answerFailure(r));
            write(r);
            resolve();
          },
          fail: (err) => reject(predictionFailure(err)),
        });
      })),
    StreamPredictions2: sequenceStream(deps, `${SERVICE}/StreamPredictions2`),
  };
}

/** Queues the request on its model, or throws TorchServe's INTERNAL for a request that cannot be queued. */
function predict(deps: GrpcDeps, request: PredictionsRequest, metadata: Metadata, sink: JobSink): void {
  if (!request.model_name) throw new GrpcFailure(status.INTERNAL, 'Parameter model_name is required.');
  const params = Object.entries(request.input).map(([name, value]) => ({ name, contentType: undefined, value }));
  try {
    queuePrediction(deps, request.model_name, request.model_version, params, headersOf(metadata), sink);
  } catch (err) {
    throw new GrpcFailure(status.INTERNAL, (err as Error).message);
  }
}

/** A gRPC call's prediction on the model's queue; `version` "" is the default one. Throws TsErrors. */
export function queuePrediction(deps: GrpcDeps, name: string, version: string, params: WireParam[], headers: Record<string, string>, sink: JobSink): void {
  const model: Model = deps.registry.get(name, version || undefined);
  submitPrediction(deps.metrics, model, version || undefined, { id: randomUUID(), headers, params }, sink);
}

/** The call's text metadata, as the request headers a handler reads. */
export function headersOf(metadata: Metadata): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata.getMap())) if (typeof value === 'string') headers[key] = value;
  return withoutJobKind(headers);
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
  return new GrpcFailure(grpcStatusOf(err.status), err.message);
}

/**
 * @module grpc/inference
 * TorchServe's gRPC inference service: Ping, Predictions (the final answer), StreamPredictions
 * (each intermediate answer of a streaming handler, then the final one). Each `input` map entry
 * is one handler parameter without a content type, so it arrives as bytes. Errors are TorchServe's:
 * a missing model name, an unknown model or version and a full queue are INTERNAL with the REST
 * message; a failed prediction maps its HTTP status. StreamPredictions2, for stateful models,
 * is in grpc/sequence-stream.ts; a stateful model may be called with the others too, its sequence
 * named by `sequence_id` (a new one opened without), and each answer names it as the stream's do:
 * `sequence_id` in a message, the sequence header in a failed call's trailers.
 */
import { status, type Metadata, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { tsError } from '../errors.js';
import type { JobResponse, JobSink } from '../batching/job.js';
import { GrpcFailure, serverStream, unary, type PredictionCall } from './calls.js';
import type { GrpcDeps } from './deps.js';
import { answerFailure, enqueueCall, headersOf, inputParams, namedSequence, predictionFailure, predictionMessage, type PredictionResponse } from './predict.js';
import { sequenceStream } from './sequence-stream.js';

interface PredictionsRequest {
  model_name: string;
  model_version: string;
  input: Record<string, Buffer>;
  sequence_id?: string;
}

const SERVICE = 'org.pytorch.serve.grpc.inference.InferenceAPIsService';

export function inferenceService(deps: GrpcDeps): UntypedServiceImplementation {
  return {
    Ping: unary(deps, 'inference', `${SERVICE}/Ping`, async () => ({
      health: JSON.stringify({ status: deps.registry.healthy() ? 'Healthy' : 'Unhealthy' }, null, 2),
    })),
    Predictions: unary<PredictionsRequest, PredictionResponse>(
      deps,
      'inference',
      `${SERVICE}/Predictions`,
      (request, call) =>
        new Promise((resolve, reject) => {
          const sequenceHeader = deps.config.sequenceHeaders.id;
          enqueuePredictionsRequest(deps, request, call, {
            intermediate: () => {},
            respond: (r) => (r.status >= 400 ? reject(answerFailure(r, sequenceHeader)) : resolve(predictionMessage(r, sequenceHeader))),
            fail: (err, headers) => reject(predictionFailure(err, headers, sequenceHeader)),
          });
        }),
    ),
    StreamPredictions: serverStream<PredictionsRequest, PredictionResponse>(
      deps,
      'inference',
      `${SERVICE}/StreamPredictions`,
      (call) =>
        new Promise((resolve, reject) => {
          const sequenceHeader = deps.config.sequenceHeaders.id;
          const write = (r: JobResponse): boolean => call.write(predictionMessage(r, sequenceHeader));
          enqueuePredictionsRequest(deps, call.request, call, {
            intermediate: write,
            respond: (r) => {
              if (r.status >= 400) return reject(answerFailure(r, sequenceHeader));
              write(r);
              resolve();
            },
            fail: (err, headers) => reject(predictionFailure(err, headers, sequenceHeader)),
          });
        }),
    ),
    StreamPredictions2: sequenceStream(deps, `${SERVICE}/StreamPredictions2`),
  };
}

/**
 * Enqueues the request on its model. A request that cannot be enqueued (no model name, an unknown
 * model or version, a full queue) ends INTERNAL with the table's message, whatever the error's own
 * status: TorchServe's inference service answers all of them so (docs/errors.md).
 */
function enqueuePredictionsRequest(deps: GrpcDeps, request: PredictionsRequest, call: PredictionCall & { readonly metadata: Metadata }, sink: JobSink): void {
  try {
    if (!request.model_name) throw tsError('TSS_ERR_MODEL_NAME_REQUIRED');
    const headers = { ...headersOf(call.metadata), ...namedSequence(request, deps.config.sequenceHeaders) };
    enqueueCall(deps, request.model_name, request.model_version, inputParams(request.input), headers, sink, call);
  } catch (err) {
    throw new GrpcFailure(status.INTERNAL, (err as Error).message);
  }
}

/**
 * @module grpc/inference
 * TorchServe's gRPC inference service: Ping, Predictions (the final answer), StreamPredictions
 * (each intermediate answer of a streaming handler, then the final one). Each `input` map entry
 * is one handler parameter without a content type, so it arrives as bytes. Errors are TorchServe's:
 * a missing model name, an unknown model or version and a full queue are INTERNAL with the REST
 * message; a failed prediction maps its HTTP status. StreamPredictions2, for stateful models,
 * is in grpc/sequence-stream.ts.
 */
import { status, type Metadata, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { tsError } from '../errors.js';
import type { JobResponse, JobSink } from '../batching/job.js';
import { GrpcFailure, serverStream, unary, type TracedCall } from './calls.js';
import type { GrpcDeps } from './deps.js';
import { answerFailure, headersOf, inputParams, predictionFailure, enqueueCall } from './predict.js';
import { sequenceStream } from './sequence-stream.js';

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
    Predictions: unary<PredictionsRequest, PredictionResponse>(
      deps,
      'inference',
      `${SERVICE}/Predictions`,
      (request, call) =>
        new Promise((resolve, reject) => {
          enqueuePredictionsRequest(deps, request, call, {
            intermediate: () => {},
            respond: (r) => (r.status >= 400 ? reject(answerFailure(r)) : resolve({ prediction: Buffer.from(r.body) })),
            fail: (err) => reject(predictionFailure(err)),
          });
        }),
    ),
    StreamPredictions: serverStream<PredictionsRequest, PredictionResponse>(
      deps,
      'inference',
      `${SERVICE}/StreamPredictions`,
      (call) =>
        new Promise((resolve, reject) => {
          const write = (r: JobResponse): boolean => call.write({ prediction: Buffer.from(r.body) });
          enqueuePredictionsRequest(deps, call.request, call, {
            intermediate: write,
            respond: (r) => {
              if (r.status >= 400) return reject(answerFailure(r));
              write(r);
              resolve();
            },
            fail: (err) => reject(predictionFailure(err)),
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
function enqueuePredictionsRequest(deps: GrpcDeps, request: PredictionsRequest, call: TracedCall & { readonly metadata: Metadata }, sink: JobSink): void {
  try {
    if (!request.model_name) throw tsError('TSS_ERR_MODEL_NAME_REQUIRED');
    enqueueCall(deps, request.model_name, request.model_version, inputParams(request.input), headersOf(call.metadata), sink, call);
  } catch (err) {
    throw new GrpcFailure(status.INTERNAL, (err as Error).message);
  }
}

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
import { tsError, type TsError } from '../errors.js';
import type { JobResponse, JobSink } from '../batching/job.js';
import { GrpcFailure, serverStream, unary, type TracedCall } from './calls.js';
import type { GrpcDeps } from './deps.js';
import { answerFailure, headersOf, inputParams, predictionFailure, enqueueCall } from './predict.js';
import { namedSequence, sequenceStream } from './sequence-stream.js';

interface PredictionsRequest {
  model_name: string;
  model_version: string;
  input: Record<string, Buffer>;
  sequence_id?: string;
}

interface PredictionResponse {
  prediction: Buffer;
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
          const answer = sequenceAnswers(deps);
          enqueuePredictionsRequest(deps, request, call, {
            intermediate: () => {},
            respond: (r) => (r.status >= 400 ? reject(answer.failure(r)) : resolve(answer.message(r))),
            fail: (err, headers) => reject(answer.failed(err, headers)),
          });
        }),
    ),
    StreamPredictions: serverStream<PredictionsRequest, PredictionResponse>(
      deps,
      'inference',
      `${SERVICE}/StreamPredictions`,
      (call) =>
        new Promise((resolve, reject) => {
          const answer = sequenceAnswers(deps);
          const write = (r: JobResponse): boolean => call.write(answer.message(r));
          enqueuePredictionsRequest(deps, call.request, call, {
            intermediate: write,
            respond: (r) => {
              if (r.status >= 400) return reject(answer.failure(r));
              write(r);
              resolve();
            },
            fail: (err, headers) => reject(answer.failed(err, headers)),
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
    const headers = { ...headersOf(call.metadata), ...namedSequence(request, deps.config.sequenceHeaders) };
    enqueueCall(deps, request.model_name, request.model_version, inputParams(request.input), headers, sink, call);
  } catch (err) {
    throw new GrpcFailure(status.INTERNAL, (err as Error).message);
  }
}

/** A prediction's answer as a message, its failures as the call's. */
interface Answers {
  message(r: JobResponse): PredictionResponse;
  failure(r: JobResponse): GrpcFailure;
  failed(err: TsError, headers?: Readonly<Record<string, string>>): GrpcFailure;
}

/**
 * A prediction's messages and failures, each naming the sequence its answer's headers name (a
 * stateful model's; none for any other): a client whose call opened a sequence learns its id
 * also when the call failed, to continue or end it (review-16 F5).
 */
function sequenceAnswers(deps: GrpcDeps): Answers {
  const name = deps.config.sequenceHeaders.id;
  const named = (headers: Readonly<Record<string, string>> | undefined): Record<string, string> => {
    const id = headers?.[name];
    return id === undefined ? {} : { [name]: id };
  };
  return {
    message: (r: JobResponse): PredictionResponse => {
      const id = r.headers[name];
      return { prediction: Buffer.from(r.body), ...(id === undefined ? {} : { sequence_id: id }) };
    },
    failure: (r: JobResponse): GrpcFailure => answerFailure(r).with(named(r.headers)),
    failed: (err: TsError, headers?: Readonly<Record<string, string>>): GrpcFailure => predictionFailure(err).with(named(headers)),
  };
}

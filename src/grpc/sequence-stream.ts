/**
 * @module grpc/sequence-stream
 * StreamPredictions2, TorchServe's bidirectional stream for stateful models: each message is one
 * request of a sequence, answered in order on the same stream with its `sequence_id`. A message
 * without `sequence_id` must carry input `ts_request_sequence_start` = `true`, and the server
 * opens the sequence; input `ts_request_sequence_end` = `true` closes it. Errors travel in-band,
 * in the answer's `status`, and the stream stays open. Traced, the stream's response metadata
 * and access line carry its first prediction's trace (grpc/predict.ts).
 */
import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import type { SequenceHeaders } from '../config/server-config.js';
import type { JobSink } from '../batching/job.js';
import { tsError } from '../errors.js';
import { accessLog, asFailure, authorize, GrpcFailure, refuseUndecoded } from './calls.js';
import {
  answerFailure,
  headersOf,
  enqueueCall,
  inputFlag,
  inputParams,
  namedSequence,
  predictionMessage,
  type PredictionResponse,
  traceFailedMessage,
} from './predict.js';
import type { GrpcDeps } from './deps.js';

interface SequenceRequest {
  model_name: string;
  model_version: string;
  input: Record<string, Buffer>;
  sequence_id?: string;
}

/** A PredictionResponse, or a failure in-band. */
interface SequenceResponse extends PredictionResponse {
  status?: { code: number; message: string; details: never[] };
}

type Call = ServerDuplexStream<SequenceRequest, SequenceResponse>;

export function sequenceStream(deps: GrpcDeps, method: string) {
  return (call: Call): void => {
    const done = accessLog(deps, method, call);
    try {
      authorize(deps, 'inference', call);
    } catch (err) {
      const failure = asFailure(err);
      done(failure.code);
      call.emit('error', { code: failure.code, details: failure.message });
      return;
    }
    // One request at a time: a sequence's requests must reach its worker in order. The next one
    // is read only once this one is answered, so that it waits in the client's HTTP/2 window
    // rather than here, decoded.
    const reads = readWhenAnswered(call);
    let answered = Promise.resolve();
    call.on('data', (request: SequenceRequest) => {
      reads.answering();
      answered = answered.then(() => answer(deps, call, request)).then(reads.answered);
    });
    call.on('end', () => {
      void answered.then(() => {
        done(status.OK);
        call.end();
      });
    });
    // A stream its client cancelled, or let pass its deadline, may never end: its line is written
    // now (CANCELLED or DEADLINE_EXCEEDED: accessLog; review-19 F1).
    call.once('cancelled', () => done(status.CANCELLED));
  };
}

/**
 * Holds the call's reads while a message is answered. Pausing the stream is not enough: a paused
 * Node stream still reads ahead to its high-water mark, 16 messages of up to max_request_size
 * each for a grpc-js call, all decoded; a read held here leaves grpc-js's HTTP/2 stream paused.
 */
function readWhenAnswered(call: Call): { answering(): void; answered(): void } {
  const read = call._read.bind(call);
  let answering = false;
  let held: number | undefined;
  call._read = (size: number): void => {
    if (answering) held = size;
    else read(size);
  };
  return {
    answering: () => {
      answering = true;
    },
    answered: () => {
      answering = false;
      const size = held;
      held = undefined;
      if (size !== undefined) read(size);
    },
  };
}

function answer(deps: GrpcDeps, call: Call, request: SequenceRequest): Promise<void> {
  const names = deps.config.sequenceHeaders;
  const inBand = (failure: GrpcFailure, sequenceId = request.sequence_id): void => {
    call.write({
      prediction: Buffer.alloc(0),
      ...(sequenceId ? { sequence_id: sequenceId } : {}),
      status: { code: failure.code, message: failure.message, details: [] },
    });
  };
  return new Promise((resolve) => {
    const callHeaders = headersOf(call.metadata);
    try {
      refuseUndecoded(request);
      const headers = { ...callHeaders, ...sequenceHeaders(request, names) };
      const sink: JobSink = {
        // Each streamed part is a message of its own, as TorchServe's GRPCJob sends them.
        intermediate: (r) => call.write(predictionMessage(r, names.id)),
        respond: (r) => {
          if (r.status >= 400) inBand(answerFailure(r, names.id), r.headers[names.id]);
          else call.write(predictionMessage(r, names.id));
          resolve();
        },
        fail: (err, serverHeaders) => {
          inBand(GrpcFailure.of(err), serverHeaders?.[names.id]);
          resolve();
        },
      };
      enqueueCall(deps, request.model_name, request.model_version, inputParams(request.input), headers, sink, call);
    } catch (err) {
      traceFailedMessage(deps, call, { name: String(request.model_name), version: request.model_version || 'default' }, callHeaders, err);
      inBand(asFailure(err));
      resolve();
    }
  });
}

/** The sequence headers a message stands for; a message that neither names nor starts a sequence is refused. */
function sequenceHeaders(request: SequenceRequest, names: SequenceHeaders): Record<string, string> {
  if (!request.sequence_id && !inputFlag(request, names.start)) throw GrpcFailure.of(tsError('TSS_ERR_SEQUENCE_ID_REQUIRED'));
  return namedSequence(request, names);
}

/**
 * @module grpc/open-inference
 * The Open Inference Protocol's gRPC service (KServe v2), on the inference gRPC port when
 * `ts_open_inference_protocol` is on, as TorchServe hosts it. ModelInfer turns the request into
 * the v2 JSON body `{id, model_name, model_version, inputs: [{name, datatype, shape, data}]}`, sent
 * to the handler as `application/json` (the kservev2 envelope reads it), and the handler's v2
 * answer back into a ModelInferResponse. Tensor values come from the `contents` field of their
 * datatype or from `raw_input_contents` (little-endian; BYTES as 4-byte length + bytes). Behind
 * the kservev2 envelope raw tensors cross to the worker as their bytes, and a call with raw inputs
 * is answered with `raw_output_contents` (http/binary-tensors.ts); any other handler gets them as
 * JSON `data`. Each BYTES element reaches the handler base64-encoded, as TorchServe sends them, so
 * binary (an image) and text alike arrive intact and a handler decodes them as it decodes any
 * base64 input.
 */
import type { Metadata, UntypedServiceImplementation } from '@grpc/grpc-js';
import { tsError } from '../errors.js';
import { VERSION } from '../version.js';
import { modelMetadata } from '../models/model-metadata.js';
import { asFailure, GrpcFailure, unary, type PredictionCall } from './calls.js';
import { answerFailure, headersOf, enqueueCall, predictionFailure, sequenceTrailers } from './predict.js';
import type { GrpcDeps } from './deps.js';
import { HEADER_LENGTH, readsTensorBytes, splitBinaryBody, tensorParams, type TensorRequest } from '../http/binary-tensors.js';

type Contents = Partial<Record<ContentsField, unknown[]>>;
type ContentsField =
  | 'bool_contents'
  | 'int_contents'
  | 'int64_contents'
  | 'uint_contents'
  | 'uint64_contents'
  | 'fp32_contents'
  | 'fp64_contents'
  | 'bytes_contents';

interface Tensor {
  name: string;
  datatype: string;
  shape: number[];
  contents?: Contents | null;
}

interface ModelInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  inputs: Tensor[];
  raw_input_contents: Buffer[];
}

interface V2Answer {
  id?: string;
  model_name?: string;
  model_version?: string;
  outputs?: Array<{ name: string; datatype: string; shape?: number[]; data?: unknown[] }>;
}

const FIELD: Record<string, ContentsField> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

/**
 * The service as TorchServe names it (`org.pytorch.serve.grpc.openinference.GRPCInferenceService`
 * on 7070) or as KServe names it (`inference.GRPCInferenceService` on the KServe listener, 8081):
 * the same messages, field for field.
 */
export function openInferenceService(deps: GrpcDeps, service: string): UntypedServiceImplementation {
  const method = <Req, Res>(name: string, run: (request: Req, metadata: Metadata, call: PredictionCall) => Promise<Res>) =>
    unary<Req, Res>(deps, 'inference', `${service}/${name}`, (request, call) => run(request, call.metadata, call));
  const model = (name: string, version: string) => {
    try {
      return deps.registry.get(name, version || undefined);
    } catch (err) {
      throw asFailure(err);
    }
  };
  return {
    ServerLive: method('ServerLive', async () => ({ live: true })),
    ServerReady: method('ServerReady', async () => ({ ready: deps.registry.serving() })),
    // TorchServe declares this one without serving it; KServe clients ask it first.
    ServerMetadata: method('ServerMetadata', async () => ({ name: 'Torchserve', version: VERSION, extensions: ['kserve', 'kubeflow'] })),
    ModelReady: method<{ name: string; version: string }, { ready: boolean }>('ModelReady', async (r) => {
      return { ready: model(r.name, r.version).serving };
    }),
    ModelMetadata: method<{ name: string; version: string }, object>('ModelMetadata', async (r) => modelMetadata(deps.registry, model(r.name, r.version))),
    ModelInfer: method<ModelInferRequest, object>('ModelInfer', (request, metadata, call) => infer(deps, request, metadata, call)),
  };
}

function infer(deps: GrpcDeps, request: ModelInferRequest, metadata: Metadata, call: PredictionCall): Promise<object> {
  const sequenceHeader = deps.config.sequenceHeaders.id;
  return new Promise((resolve, reject) => {
    try {
      // An unknown model is answered before its inputs are expanded.
      const model = deps.registry.get(request.model_name, request.model_version || undefined);
      const binary = readsTensorBytes(model, deps.config);
      const params = tensorParams(tensorRequest(request, binary), binary, deps.config.maxRequestSize, 'raw_input_contents');
      enqueueCall(
        deps,
        request.model_name,
        request.model_version,
        params,
        headersOf(metadata),
        {
          intermediate: () => {},
          respond: (r) => {
            if (r.status >= 400) return reject(answerFailure(r, sequenceHeader));
            try {
              const response = inferResponse(Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength), r.headers[HEADER_LENGTH]);
              resolve({ ...response, parameters: sequenceParameters(r.headers, sequenceHeader) });
            } catch (err) {
              reject(asFailure(err).with(sequenceTrailers(r.headers, sequenceHeader)));
            }
          },
          fail: (err, headers) => reject(predictionFailure(err, headers, sequenceHeader)),
        },
        call,
      );
    } catch (err) {
      reject(asFailure(err));
    }
  });
}

/**
 * A stateful model's answer names its sequence in the response's parameters, as REST's does in a
 * header (`ts_request_sequence_id`); a failed call, in its trailers. A client continues the
 * sequence with the `ts_request_sequence_id` metadata (review-17 F2).
 */
function sequenceParameters(headers: Readonly<Record<string, string>>, sequenceHeader: string): Record<string, { string_param: string }> {
  const id = headers[sequenceHeader];
  return id === undefined ? {} : { [sequenceHeader]: { string_param: id } };
}

/**
 * The call as a v2 header and its raw tensors. Raw inputs ask for raw outputs, as KServe's model
 * server answers them (its InferRequest.use_binary_outputs for gRPC) and as Triton always does:
 * with `binary_data_output` the envelope answers in binary form, which becomes raw_output_contents.
 */
function tensorRequest(request: ModelInferRequest, binary: boolean): TensorRequest {
  const given = request.raw_input_contents.length;
  // Raw contents are every input's or none (the protocol's rule, and KServe's and Triton's): one
  // more than the inputs was silently dropped.
  if (given > 0 && given !== request.inputs.length) {
    throw GrpcFailure.of(
      tsError('TSS_ERR_HTTP_BAD_REQUEST', `raw_input_contents has ${given} entries for ${request.inputs.length} inputs: it must have one per input`),
    );
  }
  const raws = new Map<number, Uint8Array>();
  const inputs = request.inputs.map((input, i) => {
    const head = { name: input.name, datatype: input.datatype, shape: input.shape };
    const raw = request.raw_input_contents[i];
    if (raw === undefined) return { ...head, data: contentsData(input) };
    raws.set(i, raw);
    return { ...head, parameters: { binary_data_size: raw.length } };
  });
  const header = { id: request.id, model_name: request.model_name, model_version: request.model_version, inputs };
  return { header: binary && raws.size > 0 ? { ...header, parameters: { binary_data_output: true } } : header, raws };
}

/** An input's values from its datatype's contents field (BYTES base64-encoded, as TorchServe sends them). */
function contentsData(input: Tensor): unknown[] {
  const field = FIELD[input.datatype];
  if (!field) throw GrpcFailure.of(tsError('TSS_ERR_HTTP_BAD_REQUEST', `Input "${input.name}": datatype ${input.datatype} needs raw_input_contents`));
  const values = input.contents?.[field] ?? [];
  return field === 'bytes_contents' ? values.map((b) => Buffer.from(b as Uint8Array).toString('base64')) : values;
}

/**
 * The handler's v2 answer (the kservev2 envelope's) as a ModelInferResponse: from its JSON, or
 * from its binary form (`headerLength` set), each output's bytes as its raw_output_contents.
 */
function inferResponse(body: Buffer, headerLength: string | undefined): object {
  const split = headerLength === undefined ? undefined : splitAnswer(body, headerLength);
  const answer = split?.answer ?? parsedAnswer(body);
  const outputs = answer.outputs.map((o) => {
    const described = { name: o.name, datatype: o.datatype, shape: o.shape ?? [o.data?.length ?? 0] };
    if (split || !Array.isArray(o.data)) return described;
    const field = FIELD[o.datatype] ?? 'bytes_contents';
    const values = field === 'bytes_contents' ? o.data.map((v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v))) : o.data;
    return { ...described, contents: { [field]: values } };
  });
  return {
    id: answer.id ?? '',
    model_name: answer.model_name ?? '',
    model_version: answer.model_version ?? '',
    outputs,
    ...(split && { raw_output_contents: split.raws }),
  };
}

type ParsedAnswer = V2Answer & { outputs: NonNullable<V2Answer['outputs']> };

function parsedAnswer(json: Buffer): ParsedAnswer {
  let answer: V2Answer;
  try {
    answer = JSON.parse(json.toString('utf8')) as V2Answer;
  } catch {
    throw notOpenInference();
  }
  if (!Array.isArray(answer?.outputs)) throw notOpenInference();
  return answer as ParsedAnswer;
}

/** A binary answer's header and each output's bytes (none for an output answered as JSON), split as a request is. */
function splitAnswer(body: Buffer, headerLength: string): { answer: ParsedAnswer; raws: Uint8Array[] } {
  try {
    const { header, raws } = splitBinaryBody(body, headerLength, 'outputs');
    const answer = header as unknown as ParsedAnswer;
    return { answer, raws: answer.outputs.map((_, i) => raws.get(i) ?? new Uint8Array(0)) };
  } catch {
    throw notOpenInference();
  }
}

function notOpenInference(): GrpcFailure {
  return GrpcFailure.of(tsError('TSS_ERR_PREDICTION_NOT_OPEN_INFERENCE'));
}

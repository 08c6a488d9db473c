/**
 * @module grpc/open-inference
 * The Open Inference Protocol's gRPC service (KServe v2), on the inference gRPC port when
 * `ts_open_inference_protocol` is on, as TorchServe hosts it. ModelInfer turns the request into
 * the v2 JSON body `{id, model_name, model_version, inputs: [{name, datatype, shape, data}]}`, sent
 * to the handler as `application/json` (the kservev2 envelope reads it), and the handler's v2 JSON
 * answer back into a ModelInferResponse. Tensor values come from the `contents` field of their
 * datatype or from `raw_input_contents` (little-endian; BYTES as 4-byte length + bytes); each BYTES
 * element reaches the handler base64-encoded, as TorchServe sends them, so binary (an image) and
 * text alike arrive intact and a handler decodes them as it decodes any base64 input.
 */
import type { Metadata, UntypedServiceImplementation } from '@grpc/grpc-js';
import { tsError } from '../errors.js';
import { VERSION } from '../version.js';
import { modelMetadata } from '../models/model-metadata.js';
import { asFailure, GrpcFailure, unary, type TracedCall } from './calls.js';
import { answerFailure, headersOf, predictionFailure, enqueueCall } from './predict.js';
import type { GrpcDeps } from './deps.js';
import { rawJsonFloor, rawTensorJson } from './raw-tensors.js';

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
  outputs?: Array<{ name: string; datatype: string; shape?: number[]; data: unknown[] }>;
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
  const method = <Req, Res>(name: string, run: (request: Req, metadata: Metadata, call: TracedCall) => Promise<Res>) =>
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

function infer(deps: GrpcDeps, request: ModelInferRequest, metadata: Metadata, call: TracedCall): Promise<object> {
  return new Promise((resolve, reject) => {
    try {
      // An unknown model is answered before its inputs are expanded.
      deps.registry.get(request.model_name, request.model_version || undefined);
      refuseOverLimit(request, deps.config.maxRequestSize);
      const params = [{ name: 'body', contentType: 'application/json', value: Buffer.from(v2Body(request), 'utf8') }];
      enqueueCall(
        deps,
        request.model_name,
        request.model_version,
        params,
        headersOf(metadata),
        {
          intermediate: () => {},
          respond: (r) => {
            if (r.status >= 400) return reject(answerFailure(r));
            try {
              resolve(inferResponse(Buffer.from(r.body).toString('utf8')));
            } catch (err) {
              reject(err);
            }
          },
          fail: (err) => reject(predictionFailure(err)),
        },
        call,
      );
    } catch (err) {
      reject(asFailure(err));
    }
  });
}

/**
 * Raw values are refused when their JSON alone would be larger than max_request_size: the body the
 * handler gets could not have come over HTTP, and writing it (6 MB of BOOL are 36 MB of JSON) is
 * what such a message costs the server.
 */
function refuseOverLimit(request: ModelInferRequest, limit: number): void {
  let floor = 0;
  request.raw_input_contents.forEach((raw, i) => {
    floor += rawJsonFloor(request.inputs[i]?.datatype ?? '', raw);
  });
  if (floor > limit) throw GrpcFailure.of(tsError('TSS_ERR_HTTP_BODY_TOO_LARGE', limit));
}

/** The v2 JSON body; each input's values written as JSON text once (raw ones straight from their bytes, grpc/raw-tensors.ts). */
function v2Body(request: ModelInferRequest): string {
  const inputs = request.inputs.map((input, i) => {
    const described = JSON.stringify({ name: input.name, datatype: input.datatype, shape: input.shape });
    return `${described.slice(0, -1)},"data":${tensorJson(input, request.raw_input_contents[i])}}`;
  });
  const head = JSON.stringify({ id: request.id, model_name: request.model_name, model_version: request.model_version });
  return `${head.slice(0, -1)},"inputs":[${inputs.join(',')}]}`;
}

/** An input's values as JSON: its datatype's contents field, or its raw bytes. */
function tensorJson(input: Tensor, raw: Buffer | undefined): string {
  if (raw) return rawTensorJson(input.name, input.datatype, input.shape, raw);
  const field = FIELD[input.datatype];
  if (!field) throw GrpcFailure.of(tsError('TSS_ERR_HTTP_BAD_REQUEST', `Input "${input.name}": datatype ${input.datatype} needs raw_input_contents`));
  const values = input.contents?.[field] ?? [];
  return JSON.stringify(field === 'bytes_contents' ? values.map((b) => Buffer.from(b as Uint8Array).toString('base64')) : values);
}

/** The handler's v2 JSON answer (the kservev2 envelope's) as a ModelInferResponse. */
function inferResponse(text: string): object {
  let answer: V2Answer;
  try {
    answer = JSON.parse(text) as V2Answer;
  } catch {
    throw GrpcFailure.of(tsError('TSS_ERR_PREDICTION_NOT_OPEN_INFERENCE'));
  }
  if (!Array.isArray(answer.outputs)) throw GrpcFailure.of(tsError('TSS_ERR_PREDICTION_NOT_OPEN_INFERENCE'));
  return {
    id: answer.id ?? '',
    model_name: answer.model_name ?? '',
    model_version: answer.model_version ?? '',
    outputs: answer.outputs.map((o) => {
      const field = FIELD[o.datatype] ?? 'bytes_contents';
      const values = field === 'bytes_contents' ? o.data.map((v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v))) : o.data;
      return { name: o.name, datatype: o.datatype, shape: o.shape ?? [o.data.length], contents: { [field]: values } };
    }),
  };
}

/**
 * @module handler/envelope
 * TorchServe's request envelopes wrap a handler's entry point (`service_envelope` in
 * config.properties, else the manifest's `envelope`): they read each request's body into the
 * rows the handler sees and write the handler's answers back in the envelope's form.
 *
 * - `body` (TorchServe's default): each request's `data` (or `body`) is its row, one level
 *   unwrapped: a JSON object `{"data": "<base64>"}` becomes the row itself; answers as they are.
 * - `json` (TF Serving): `{"instances": [...]}` in, `{"predictions": [...]}` out; an object
 *   instance is the row itself, its named inputs by name (`{"data": ...}`, `{"image": ...}`), as
 *   TorchServe's rows are the instances; any other value is a row `{body, data}`. A `{"b64": "..."}`
 *   value, the instance or one of its named inputs, is decoded to its bytes.
 * - `kserve` (KServe v1, `/v1/models/{m}:predict`): the same body and rows (`{"data": "<base64>"}`
 *   as in KServe's examples). Out: `{"predictions": [...]}`, or `{"explanations": [...]}` for `:explain`.
 * - `kservev2` (Open Inference Protocol, `/v2/models/{m}/infer`): each of
 *   `{"id", "inputs": [{name, shape, datatype, data}]}`'s inputs is a row with its `data` shaped
 *   to `shape` (a BYTES input gives `data[0]`, whatever its shape says); out `{"id", "model_name", "model_version",
 *   "outputs": [{name, datatype, data, shape}]}`, one output per input, named after it. KServe's
 *   and Triton's binary tensor data extension both ways: an input sent as bytes (its
 *   `binary_data_size`, its bytes a parameter of their own, http/binary-tensors.ts) is a row whose
 *   `data` is a flat typed array of its values (FP32 a Float32Array over the request's bytes), and
 *   outputs asked in binary form (`binary_data`, `binary_data_output`) are answered in it.
 *
 * The rows of every request of a batch go to the handler as one flat batch and the answers are
 * grouped back, one reply per request (TorchServe answers only the first request of a batch).
 * A request the envelope cannot read gets its own 400 at once; the rest of its batch is still answered.
 * As in TorchServe, the context still describes the HTTP requests, not the rows.
 */
import {
  binaryParamName,
  bytesTensor,
  datatypeOfValues,
  elementSize,
  flattenTensor,
  MAX_TENSOR_RANK,
  tensorValues,
  type TensorValues,
  V2_DATATYPES,
  valuesBytes,
} from '../protocol/tensor-bytes.js';
import { eachInput } from './base-handler.js';
import type { EntryPoint } from './load.js';
import { serializeOutput } from './run.js';
import { UnreadRequests } from './unread.js';
import { isDescribeRequest } from './context.js';
import { InputErrors, PredictionError, type Context, type HandlerOutput, type InputValue, type JsonValue, type RequestInput } from './types.js';

export const ENVELOPES = ['body', 'json', 'kserve', 'kservev2'] as const;
export type Envelope = (typeof ENVELOPES)[number];

export function isEnvelope(name: string): name is Envelope {
  return (ENVELOPES as readonly string[]).includes(name);
}

/** One request as an envelope reads it: the handler's rows, and how to answer from their outputs. */
interface Unwrapped {
  readonly rows: RequestInput[];
  answer(outputs: HandlerOutput[], idx: number, context: Context): HandlerOutput;
}

type Reader = (request: RequestInput) => Unwrapped;

const READERS: Record<Envelope, Reader> = { body: readBody, json: readJson, kserve: readKserve, kservev2: readKservev2 };

export function withEnvelope(entry: EntryPoint, envelope: Envelope | undefined): EntryPoint {
  if (envelope === undefined) return entry;
  const read = READERS[envelope];
  return {
    initialize: (context: Context) => entry.initialize(context),
    async handle(batch: RequestInput[], context: Context): Promise<HandlerOutput[]> {
      // A customized describe carries no body for an envelope to read.
      if (isDescribeRequest(context)) return (await entry.handle(batch, context)) as HandlerOutput[];
      const requests = await readAll(read, batch);
      const rows = requests.flatMap((r) => r.rows);
      const outputs = rows.length > 0 ? await entry.handle(rows, context).catch((err: unknown) => Promise.reject(byRequest(err, rows, requests, batch))) : [];
      if (!Array.isArray(outputs) || outputs.length !== rows.length) return outputs as HandlerOutput[];
      let next = 0;
      return requests.map((r, idx) => r.answer(outputs.slice(next, (next += r.rows.length)), idx, context));
    },
  };
}

/**
 * The handler's refusal of `rows` it names (eachInput's InputErrors) as the refusal of the
 * requests of `batch` they came from, each by its first refused row: it is the requests that are
 * answered and run again, and a request's rows are one batch's.
 */
function byRequest(err: unknown, rows: RequestInput[], requests: Unwrapped[], batch: RequestInput[]): unknown {
  if (!(err instanceof InputErrors)) return err;
  const owner = requests.flatMap((request, idx) => request.rows.map(() => idx));
  const refused = new Map<number, PredictionError>();
  for (const [row, rowError] of err.of(rows)) {
    const idx = owner[row]!;
    if (!refused.has(idx)) refused.set(idx, rowError);
  }
  return refused.size > 0 ? new InputErrors(refused, batch) : new PredictionError(err.message, err.status);
}

/**
 * Every request of `batch` read (eachInput); those the envelope cannot read are refused
 * (UnreadRequests), each with its own 400, before any row reaches the handler: answerBatch
 * answers them at once and runs the others as a batch of their own. Answered at the batch's end instead, a 400 went
 * with the worker when the others' run outlived the response timeout (review-14 F1).
 */
async function readAll(read: Reader, batch: RequestInput[]): Promise<Unwrapped[]> {
  try {
    return await eachInput(batch, (request) => read(request));
  } catch (err) {
    throw err instanceof InputErrors ? new UnreadRequests(err.errors, batch) : err;
  }
}

/** TorchServe's default envelope: the request's `data` (or `body`) is the row, its answer as is. */
function readBody(request: RequestInput): Unwrapped {
  const value = request.data ?? request.body;
  if (value === undefined) throw new PredictionError('The request has no data: send a body or a "data" field', 400);
  return { rows: [objectOrRow(value)], answer: (outputs) => outputs[0] ?? null };
}

function readJson(request: RequestInput): Unwrapped {
  const rows = instancesOf(request).map(instanceRow);
  return { rows, answer: (outputs) => ({ predictions: outputs.map(asJson) }) };
}

function readKserve(request: RequestInput): Unwrapped {
  const rows = instancesOf(request).map(instanceRow);
  return {
    rows,
    answer: (outputs, idx, context) => {
      const values = outputs.map(asJson);
      return context.getRequestHeader(idx, 'explain') === 'True' ? { explanations: values } : { predictions: values };
    },
  };
}

function readKservev2(request: RequestInput): Unwrapped {
  const body = bodyObject(request, '{"inputs": [{"name", "shape", "datatype", "data"}]}');
  if (!Array.isArray(body.inputs) || body.inputs.length === 0) {
    throw new PredictionError('Expected a JSON body {"inputs": [{"name", "shape", "datatype", "data"}]}', 400);
  }
  const rows = body.inputs.map((input, k) => inputRow(input, k, request[binaryParamName(k)]));
  const id = typeof body.id === 'string' && body.id.trim() !== '' ? body.id : undefined;
  const binary = binaryOutputs(body);
  return {
    rows,
    answer: (outputs, idx, context) => {
      const head = {
        id: id ?? context.getRequestId(idx) ?? '',
        model_name: context.manifest.model.modelName ?? context.modelName,
        model_version: context.manifest.model.modelVersion,
      };
      const tensors = outputs.map((output, k) => outputTensor(output, String(rows[k]!.name)));
      if (!tensors.some((o) => binary(o.name))) return { ...head, outputs: tensors.map(jsonTensor) };
      return binaryAnswer(head, tensors, binary, (name, value) => context.setResponseHeader(idx, name, value));
    },
  };
}

const V2_TYPES = new Set(V2_DATATYPES);

/**
 * One v2 input as a handler row; its data shaped as it says, after checking that it fits. An input
 * sent as bytes (`binary_data_size`, its bytes in `binary`) is a typed array of its values, flat,
 * viewing the bytes the request brought (protocol/tensor-bytes.ts).
 */
function inputRow(input: JsonValue, k: number, binary: InputValue | undefined): RequestInput {
  if (!isObject(input)) throw new PredictionError(`Input ${k} is not an object {"name", "shape", "datatype", "data"}`, 400);
  const { name, shape, datatype, data } = input;
  const label = typeof name === 'string' ? `Input "${name}"` : `Input ${k}`;
  if (typeof name !== 'string') throw new PredictionError(`${label} has no "name"`, 400);
  if (typeof datatype !== 'string' || !V2_TYPES.has(datatype)) {
    throw new PredictionError(`${label}: "datatype" must be one of ${V2_DATATYPES.join(', ')}`, 400);
  }
  const bytes = isObject(input.parameters) && input.parameters.binary_data_size !== undefined;
  if (!bytes && !Array.isArray(data)) throw new PredictionError(`${label}: "data" must be a list`, 400);
  // The shape of BYTES is not read, as in TorchServe: KServe's own samples send -1 or [-1].
  if (datatype === 'BYTES' && Array.isArray(data)) return { name, shape: shape ?? null, datatype, data: data[0] ?? null };
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && (d as number) >= 0)) {
    throw new PredictionError(`${label}: "shape" must be a list of non-negative integers`, 400);
  }
  // Each dimension is a level of nesting to build; no model has more than a handful.
  if (shape.length > MAX_TENSOR_RANK) {
    throw new PredictionError(`${label}: "shape" has ${shape.length} dimensions, at most ${MAX_TENSOR_RANK} are accepted`, 400);
  }
  const size = (shape as number[]).reduce((a, b) => a * b, 1);
  // A tensor of no values has nothing to predict, and its other axes are unbounded: [1, 3, 1e9, 0]
  // was a billion empty lists here, or a billion rows in onnxruntime (memory without end).
  if (size === 0) throw new PredictionError(`${label}: shape [${shape.join(', ')}] holds no values`, 400);
  if (bytes) return { name, shape, datatype, data: binaryValues(label, datatype, size, binary) };
  const flat = flattenTensor(data as unknown[]) as JsonValue[];
  if (flat.some(Array.isArray)) throw new PredictionError(`${label}: "data" is nested more than ${MAX_TENSOR_RANK} lists deep`, 400);
  if (flat.length !== size) throw new PredictionError(`${label}: shape [${shape.join(', ')}] holds ${size} values, "data" has ${flat.length}`, 400);
  return { name, shape, datatype, data: reshape(flat, shape as number[]) };
}

/** An input's values from its bytes; the front end checked them against the shape (http/binary-tensors.ts). */
function binaryValues(label: string, datatype: string, size: number, binary: InputValue | undefined): TensorValues {
  if (!(binary instanceof Uint8Array) || datatype === 'BYTES') {
    throw new PredictionError(`${label}: binary_data_size without its bytes (send the body with Inference-Header-Content-Length)`, 400);
  }
  // Whole values only: a form field can carry bytes the front end never checked (binary_data_<i>).
  // The bytes' size is the datatype's, not the values': FP16 arrives as 2 bytes a value, read as floats.
  const bytes = size * (elementSize(datatype) ?? 0);
  if (binary.byteLength !== bytes) {
    throw new PredictionError(`${label}: its shape holds ${size} ${datatype} values (${bytes} bytes), its binary data has ${binary.byteLength} bytes`, 400);
  }
  return tensorValues(datatype, binary);
}

function reshape(flat: JsonValue[], shape: number[]): JsonValue {
  if (shape.length === 0) return flat[0] ?? null;
  const [outer, ...inner] = shape as [number, ...number[]];
  const step = inner.reduce((a, b) => a * b, 1);
  return Array.from({ length: outer }, (_, i) => reshape(flat.slice(i * step, (i + 1) * step), inner));
}

/** An output tensor before it is written: its values as the handler answered them, flattened. */
interface OutputTensor {
  readonly name: string;
  readonly datatype: string;
  readonly shape: number[];
  readonly values: TensorValues | HandlerOutput[];
}

/**
 * A handler's answer as a v2 output tensor, typed as numpy would type it, flattened; a typed
 * array (an ONNX output's data) is a tensor of its own type (a Float32Array is FP32). Bytes (a
 * Buffer) are one BYTES element.
 */
function outputTensor(output: HandlerOutput, name: string): OutputTensor {
  if (isTensorValues(output) && !(output instanceof Uint8Array)) return { name, datatype: datatypeOfValues(output), shape: [output.length], values: output };
  const data: HandlerOutput[] = Array.isArray(output) ? ((output as unknown[]).flat(Infinity) as HandlerOutput[]) : [output];
  return { name, datatype: datatypeOf(data), shape: [data.length], values: data };
}

function jsonTensor(o: OutputTensor): HandlerOutput {
  const data = Array.isArray(o.values) ? o.values.map(asJson) : Array.from(o.values as ArrayLike<number | bigint>, Number);
  return { name: o.name, datatype: o.datatype, data, shape: o.shape };
}

/** Which outputs the request asks in binary form: each output's `binary_data`, else the request's `binary_data_output`. */
function binaryOutputs(body: { [key: string]: JsonValue }): (name: string) => boolean {
  const all = isObject(body.parameters) && body.parameters.binary_data_output === true;
  const asked = new Map<JsonValue | undefined, JsonValue | undefined>();
  if (Array.isArray(body.outputs))
    for (const o of body.outputs) if (isObject(o)) asked.set(o.name, isObject(o.parameters) ? o.parameters.binary_data : undefined);
  return (name) => {
    const one = asked.get(name);
    return typeof one === 'boolean' ? one : all;
  };
}

/**
 * The answer in the binary tensor data extension's form: the JSON header (each binary output with
 * its `binary_data_size`), then those outputs' bytes in order; `Inference-Header-Content-Length`
 * says where the header ends.
 */
function binaryAnswer(head: object, tensors: OutputTensor[], binary: (name: string) => boolean, setHeader: (name: string, value: string) => void): Buffer {
  const parts: Uint8Array[] = [];
  const outputs = tensors.map((o) => {
    if (!binary(o.name)) return jsonTensor(o);
    const bytes = tensorBytes(o);
    parts.push(bytes);
    return { name: o.name, datatype: o.datatype, shape: o.shape, parameters: { binary_data_size: bytes.byteLength } };
  });
  const header = Buffer.from(JSON.stringify({ ...head, outputs }), 'utf8');
  setHeader('inference-header-content-length', String(header.length));
  setHeader('content-type', 'application/octet-stream');
  return Buffer.concat([header, ...parts]);
}

/** An output's values in binary form, of its datatype. */
function tensorBytes(o: OutputTensor): Uint8Array {
  if (!Array.isArray(o.values)) return valuesBytes(o.values);
  const values = o.values;
  switch (o.datatype) {
    case 'BOOL':
      return Uint8Array.from(values, (v) => (v ? 1 : 0));
    case 'INT64':
      return valuesBytes(BigInt64Array.from(values, (v) => BigInt(v as number)));
    case 'FP64':
      return valuesBytes(Float64Array.from(values as number[]));
    default:
      return bytesTensor(values.map((v) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : serializeOutput(v))));
  }
}

function isTensorValues(value: unknown): value is TensorValues {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

function datatypeOf(data: HandlerOutput[]): string {
  if (data.length > 0 && data.every((v) => typeof v === 'boolean')) return 'BOOL';
  if (data.length > 0 && data.every((v) => typeof v === 'number')) {
    return data.every((v) => Number.isInteger(v)) ? 'INT64' : 'FP64';
  }
  return 'BYTES';
}

function instancesOf(request: RequestInput): JsonValue[] {
  const { instances } = bodyObject(request, '{"instances": [...]}');
  if (!Array.isArray(instances)) throw new PredictionError('Expected a JSON body {"instances": [...]}', 400);
  return instances;
}

/** The request's body as a JSON object; `shape` words the error when it is not one. */
function bodyObject(request: RequestInput, shape: string): { [key: string]: JsonValue } {
  const body = parsed(request.body ?? request.data);
  if (!isObject(body)) throw new PredictionError(`Expected a JSON body ${shape}`, 400);
  return body;
}

function parsed(value: InputValue | undefined): InputValue | undefined {
  if (!Buffer.isBuffer(value) && typeof value !== 'string') return value;
  try {
    return JSON.parse(value.toString()) as JsonValue;
  } catch {
    return undefined;
  }
}

function isObject(value: InputValue | undefined): value is { [key: string]: JsonValue } {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value);
}

function asRow(value: InputValue): RequestInput {
  return { body: value, data: value };
}

/** An object (`{"data": "<base64>"}`) is a row as it is; any other value is a row's data. */
function objectOrRow(value: InputValue): RequestInput {
  return isObject(value) ? (value as RequestInput) : asRow(value);
}

/**
 * An instance as the handler's row, its base64 decoded as TorchServe's json envelope decodes it:
 * `{"b64": ...}` itself is the row's data; an object is the row, the `{"b64": ...}` values of its
 * named inputs decoded (TF Serving's `{"image": {"b64": ...}}`); any other value is the row's data.
 */
function instanceRow(instance: JsonValue): RequestInput {
  if (isB64(instance)) return asRow(fromB64(instance));
  if (!isObject(instance)) return asRow(instance);
  return Object.fromEntries(Object.entries(instance).map(([name, v]) => [name, isB64(v) ? fromB64(v) : v]));
}

function fromB64(value: { b64: string }): Buffer {
  return Buffer.from(value.b64, 'base64');
}

function isB64(value: JsonValue): value is { b64: string } {
  return isObject(value) && typeof value.b64 === 'string' && Object.keys(value).length === 1;
}

/** An answer as a JSON value inside the envelope; a Map keeps its order through the serializer. */
function asJson(output: HandlerOutput): HandlerOutput {
  if (output instanceof Uint8Array) return { b64: Buffer.from(output).toString('base64') };
  return output;
}

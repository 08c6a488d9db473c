/**
 * @module handler/base-handler
 * TorchServe's BaseHandler for ONNX: `initialize` opens the manifest's serializedFile in an
 * onnxruntime session and reads index_to_name.json; `handle` runs preprocess -> inference ->
 * postprocess (or, to explain, preprocess -> getInsights) and records HandlerTime. Subclasses
 * override the hooks they need.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { flattenTensor } from '../protocol/tensor-bytes.js';
import { createSession, ort } from '../runtime/onnx.js';
import { isDescribeRequest, stage } from './context.js';
import { explanationTarget, occlusionAttributions } from './explain.js';
import { InputErrors, PredictionError, type Context, type Handler, type HandlerOutput, type InputValue, type RequestInput } from './types.js';

/** For handlers that take tensors as nested lists (tsserve/vision's copyTensor): refused past a tensor's depth. */
export { flattenTensor, MAX_TENSOR_RANK } from '../protocol/tensor-bytes.js';

export class BaseHandler<TInput = ort.Tensor, TOutput = ort.Tensor> implements Handler {
  protected context!: Context;
  protected session!: ort.InferenceSession;
  /** Class index -> label, from index_to_name.json when the archive has one. */
  protected mapping: Record<string, string> | undefined;
  initialized = false;
  /** The rows of the batch being handled. */
  private rows = 0;

  async initialize(context: Context): Promise<void> {
    this.context = context;
    const modelDir = context.systemProperties.model_dir;
    const file = context.manifest.model.serializedFile;
    if (!file?.endsWith('.onnx')) throw new Error('No model weights could be loaded: serializedFile must be an .onnx file');
    this.session = await createSession(join(modelDir, file));
    this.mapping = loadLabelMapping(modelDir);
    this.initialized = true;
  }

  /**
   * preprocess -> inference -> postprocess; for `/explanations` (and `:explain`), preprocess ->
   * explainHandle; for describe's `customized=true`, describeHandle.
   */
  async handle(batch: RequestInput[], context: Context): Promise<HandlerOutput[]> {
    this.context = context;
    if (isDescribeRequest(context)) return [await this.describeHandle()];
    const started = performance.now();
    this.rows = batch.length;
    const input = await stage(context, 'preprocess', () => this.preprocess(batch));
    const output =
      context.getRequestHeader(0, 'explain') === 'True' ? await stage(context, 'inference', () => this.explainHandle(input, batch)) : await this.predict(input);
    context.metrics.addTime('HandlerTime', performance.now() - started);
    return output;
  }

  /** inference, then postprocess, each a stage of the batch (the worker's histograms and spans). */
  private async predict(input: TInput): Promise<HandlerOutput[]> {
    const output = await stage(this.context, 'inference', () => this.inference(input));
    return stage(this.context, 'postprocess', () => this.postprocess(output));
  }

  /**
   * What describe's `customized=true` adds as `customizedMetadata`: a JSON object about the model.
   * Default: the ONNX model's inputs and outputs as KServe v2 metadata names them (`datatype`,
   * `shape` with -1 for a dynamic axis) and the labels of index_to_name.json, where TorchServe's
   * describe_handle answers nothing. A handler may answer null to add nothing.
   */
  async describeHandle(): Promise<HandlerOutput> {
    if (!this.session) return null;
    return {
      inputs: this.session.inputMetadata.map(tensorMetadata),
      outputs: this.session.outputMetadata.map(tensorMetadata),
      ...(this.mapping && { labels: this.mapping }),
    };
  }

  /** TorchServe's explain_handle: the first request's `target` class (0 without one), then getInsights. */
  async explainHandle(input: TInput, batch: RequestInput[]): Promise<HandlerOutput[]> {
    return this.getInsights(input, batch, explanationTarget(batch[0], this.mapping));
  }

  /**
   * Each request's attributions toward class `target`. Default: occlusion over an image batch
   * (handler/explain.ts), scored by this handler's own `inference`; other inputs answer 501.
   */
  async getInsights(input: TInput, _batch: RequestInput[], target: number): Promise<HandlerOutput[]> {
    return occlusionAttributions(input, target, async (tensor) => (await this.inference(tensor as TInput)) as ort.Tensor);
  }

  /**
   * Default: each request's `data` or `body` is a JSON array of numbers (or, from the kservev2
   * envelope, a typed array); rows are stacked. A lone Float32Array row is the tensor's data itself.
   * The tensor has the model's first input's shape where it is known past the batch axis (an image
   * model's [1, 28, 28]: each row must then hold that many numbers), else [rows, numbers].
   */
  async preprocess(batch: RequestInput[]): Promise<TInput> {
    const rows = await eachInput(batch, (row) => numericArray(requestPayload(row)));
    const width = rows[0]?.length ?? 0;
    if (rows.some((r) => r.length !== width)) throw new PredictionError('All inputs of a batch must have the same length', 400);
    const only = rows.length === 1 ? rows[0] : undefined;
    const flat = only instanceof Float32Array ? only : new Float32Array(rows.length * width);
    if (flat !== only) for (const [i, r] of rows.entries()) flat.set(r, i * width);
    return new ort.Tensor('float32', flat, [rows.length, ...this.rowShape(width, batch)]) as TInput;
  }

  /**
   * A row's shape: the first model input's past its batch axis when every axis is known and there
   * are several; the client's own when the model names some of them ([1, 3, height, width]); else [width].
   */
  private rowShape(width: number, batch: RequestInput[]): number[] {
    const input = this.session?.inputMetadata[0];
    if (!input?.isTensor) return [width];
    const axes = input.shape.slice(1);
    if (axes.length < 2) return [width];
    if (!axes.every(isKnownAxis)) return clientAxes(input, batch, width);
    const size = axes.reduce((a, b) => a * b, 1);
    if (width !== size)
      throw new PredictionError(`Each input must have ${size} numbers, the model's input ${input.name} being [${input.shape.join(', ')}]: got ${width}`, 400);
    return axes;
  }

  /** Default: feeds the first model input, answers the first output. */
  async inference(input: TInput): Promise<TOutput> {
    const result = await this.session.run({ [this.session.inputNames[0]!]: input as ort.Tensor });
    return result[this.session.outputNames[0]!] as TOutput;
  }

  /** The label of class `index`, as TorchServe's map_class_to_label: index_to_name.json's, else the index. */
  protected labelOf(index: number | string): string {
    return classLabel(this.mapping, index);
  }

  /**
   * Default: splits the output along its first (batch) axis into plain number arrays. An output
   * without a batch axis (a detector's boxes, [2, 4] for one image) is a batch of one's whole answer.
   */
  async postprocess(output: TOutput): Promise<HandlerOutput[]> {
    const rows = splitBatch(output as ort.Tensor);
    return this.rows === 1 && rows.length !== 1 ? [rows] : rows;
  }
}

function isKnownAxis(d: number | string): d is number {
  return typeof d === 'number' && d > 0;
}

type TensorMetadata = Extract<ort.InferenceSession.ValueMetadata, { isTensor: true }>;

/**
 * The axes past the batch axis of rows a model input of known rank but some unknown sizes takes:
 * each request's own (its v2 `shape`, else its lists' nesting), less a leading batch axis of 1, of
 * the input's rank and its known sizes, and the same for every request of the batch.
 */
function clientAxes(input: TensorMetadata, batch: RequestInput[], width: number): number[] {
  const axes = input.shape.slice(1);
  const wanted = `a tensor of [${axes.join(', ')}] (the model's input ${input.name} being [${input.shape.join(', ')}])`;
  const shapes = batch.map((row) => {
    const given = payloadShape(row, axes.length + 1);
    const shape = given.length === axes.length + 1 && given[0] === 1 ? given.slice(1) : given;
    // Each axis holds something: a zero one made the others unbounded ([1, 3, 1e9, 0] of no values,
    // onnxruntime allocating for a billion rows).
    const fits = shape.length === axes.length && shape.every((d, i) => d > 0 && (!isKnownAxis(axes[i]!) || d === axes[i]));
    if (!fits || shape.reduce((a, b) => a * b, 1) !== width) throw new PredictionError(`Each input must be ${wanted}: got [${given.join(', ')}]`, 400);
    return shape;
  });
  const first = shapes[0] ?? [];
  if (shapes.some((s) => s.join() !== first.join())) throw new PredictionError('All inputs of a batch must have the same shape', 400);
  return first;
}

/**
 * A request's tensor shape, up to `depth` axes: a v2 row's `shape`, else the lengths of its lists'
 * first elements, level by level (a flat typed array is one axis).
 */
function payloadShape(row: RequestInput, depth: number): number[] {
  if (Array.isArray(row.shape) && row.shape.every((d) => Number.isSafeInteger(d))) return row.shape as number[];
  const payload = requestPayload(row);
  if (ArrayBuffer.isView(payload) && !Buffer.isBuffer(payload)) return [payload.length];
  let level: unknown = Buffer.isBuffer(payload) ? safeJson(payload.toString('utf8')) : typeof payload === 'string' ? safeJson(payload) : payload;
  const shape: number[] = [];
  while (Array.isArray(level) && shape.length <= depth) {
    shape.push(level.length);
    level = level[0];
  }
  return shape;
}

/** An input or output of the session as KServe v2 model metadata describes a tensor. */
function tensorMetadata(m: ort.InferenceSession.ValueMetadata): { name: string; datatype: string; shape: number[] } {
  if (!m.isTensor) return { name: m.name, datatype: 'BYTES', shape: [] };
  const datatype = m.type === 'string' ? 'BYTES' : m.type === 'bool' ? 'BOOL' : m.type.replace(/^float/, 'FP').toUpperCase();
  return { name: m.name, datatype, shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) };
}

/** A class index's label in an index_to_name.json mapping, else the index as text. */
export function classLabel(mapping: Record<string, string> | undefined, index: number | string): string {
  return mapping?.[String(index)] ?? String(index);
}

/**
 * `read` of each request of the handler's batch (the whole batch: the errors name its requests by
 * index), every one read even after one is refused. The requests `read` refuses with a client's
 * error (a 4xx PredictionError) get their own errors at once and the others run again as one
 * batch, where a refusal naming no request has each request run alone (handler/run.ts): a batch of
 * only bad inputs runs once, not once more per request. Any other failure is thrown as it is.
 */
export async function eachInput<T>(batch: RequestInput[], read: (row: RequestInput, index: number) => T | Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(batch.map(async (row, i) => read(row, i)));
  const refused = new Map<number, PredictionError>();
  for (const [i, result] of settled.entries()) {
    if (result.status === 'fulfilled') continue;
    const err: unknown = result.reason;
    if (!(err instanceof PredictionError) || err.status < 400 || err.status >= 500) throw err;
    refused.set(i, err);
  }
  if (refused.size > 0) throw new InputErrors(refused, batch);
  return settled.map((result) => (result as PromiseFulfilledResult<T>).value);
}

/**
 * The payload TorchServe's built-in handlers read: `data`, else `body`; failing both, a request's
 * only binary field whatever its name (the Flask apps this project started from upload `file`),
 * else its only field (an envelope's instance with one named input, `{"text": ...}`), where
 * TorchServe answers an error.
 */
export function requestPayload(row: RequestInput): InputValue {
  const value = row.data ?? row.body ?? onlyField(row);
  if (value === undefined) throw new PredictionError('The request has no data: send a body or a "data" field', 400);
  return value;
}

function onlyField(row: RequestInput): InputValue | undefined {
  const values = Object.values(row);
  const binary = values.filter((v) => Buffer.isBuffer(v));
  if (binary.length === 1) return binary[0];
  return values.length === 1 ? values[0] : undefined;
}

/**
 * A request payload as raw bytes: a Buffer as is, a base64 string decoded, and the JSON objects
 * clients wrap base64 in, `{"b64": ...}` (TF Serving) and `{"data": ...}` (KServe v1).
 */
export function payloadBytes(value: InputValue): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === 'string') return Buffer.from(value, 'base64');
  if (value && typeof value === 'object' && !Array.isArray(value) && !ArrayBuffer.isView(value)) {
    const wrapped = value.b64 ?? value.data;
    if (typeof wrapped === 'string') return Buffer.from(wrapped, 'base64');
  }
  throw new PredictionError('Expected binary data or a base64 string', 400);
}

function numericArray(value: InputValue): ArrayLike<number> {
  if (value instanceof BigInt64Array || value instanceof BigUint64Array) return Array.from(value, Number);
  if (ArrayBuffer.isView(value) && !Buffer.isBuffer(value)) return value;
  const parsed = Buffer.isBuffer(value) ? safeJson(value.toString('utf8')) : typeof value === 'string' ? safeJson(value) : value;
  const flat = Array.isArray(parsed) ? flattenTensor(parsed) : undefined;
  if (!flat || flat.some((v) => typeof v !== 'number')) throw new PredictionError('Expected a JSON array of numbers', 400);
  return flat as number[];
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Rows of a tensor's first axis, as plain arrays: a handler may return a row as it is, and it is
 * answered as a JSON array (a Float32Array would be a JSON object, `{"0": ...}`).
 */
export function splitBatch(tensor: ort.Tensor): number[][] {
  const data = tensor.data as Float32Array;
  const n = Number(tensor.dims[0] ?? 1);
  const size = data.length / n;
  return Array.from({ length: n }, (_, i) => Array.from(data.subarray(i * size, (i + 1) * size)));
}

/** index_to_name.json: `{"0": "label"}`, `{"1": ["wnid", "label"]}` or `{"object_type_names": [...]}`. */
export function loadLabelMapping(modelDir: string): Record<string, string> | undefined {
  const file = join(modelDir, 'index_to_name.json');
  if (!existsSync(file)) return undefined;
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  if (Array.isArray(raw.object_type_names)) {
    return Object.fromEntries(raw.object_type_names.map((label, i) => [String(i), String(label)]));
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    const label = Array.isArray(v) ? v[v.length - 1] : v;
    if (typeof label !== 'string') throw new Error(`index_to_name.json: label of ${k} is not a string`);
    out[k] = label;
  }
  return out;
}

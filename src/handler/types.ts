/**
 * @module handler/types
 * Everything a handler author needs to know, in one place. A handler is a module inside the .mar
 * that tsserve loads in a worker process. It exports either
 *
 * - a class (the default export, or the module's only exported class) with `initialize(context)`
 *   and `handle(batch, context)`; extending {@link BaseHandler} gives preprocess / inference /
 *   postprocess hooks around an onnxruntime session, or
 * - a function `handle(batch, context)` (or the function named after `:` in the manifest's
 *   handler string), called once with `batch = null` at load time and then once per batch.
 *
 * Names follow TorchServe's Python API in camelCase (`context.system_properties` ->
 * `context.systemProperties`, `set_response_status` -> `setResponseStatus`).
 */
import type { HandlerManifest } from '../protocol/messages.js';
import type { TensorValues } from '../protocol/tensor-bytes.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * One request parameter, decoded as TorchServe's worker decodes it: a body sent as
 * `application/json` arrives parsed, `text/*` as a string, anything else as a Buffer. The
 * kservev2 envelope gives a tensor sent in binary form as a typed array of its values.
 */
export type InputValue = Buffer | string | JsonValue | TensorValues;

export type { TensorValues } from '../protocol/tensor-bytes.js';

/**
 * One request of a batch: parameter name -> value. A raw body (`curl -T file`) is under `body`;
 * multipart and form fields are under their own names (`curl -F data=@file` -> `data`).
 */
export type RequestInput = Record<string, InputValue>;

/**
 * What a handler answers for one request: bytes (a Buffer or any Uint8Array) are sent as they are,
 * a string as UTF-8, anything else as JSON with two-space indentation, as TorchServe does. A Map
 * is written as a JSON object in insertion order.
 */
export type HandlerOutput = Uint8Array | string | number | boolean | null | object;

/** `context.systemProperties`, as TorchServe's `system_properties`. */
export interface SystemProperties {
  /** The directory the .mar was extracted into: the handler's files and the model are here. */
  readonly model_dir: string;
  /** Always null: tsserve serves on CPU. */
  readonly gpu_id: number | null;
  readonly batch_size: number;
  readonly server_name: string;
  readonly server_version: string;
  readonly limit_max_image_pixels: boolean;
}

/**
 * Custom metrics, as TorchServe's `context.metrics`. They reach the metrics API and model_metrics.log
 * when the server's metrics.yaml (`metrics_config`) declares them under `model_metrics`, or with
 * `model_metrics_auto_detect=true`; otherwise the server drops them and logs a warning once.
 */
export interface MetricsApi {
  /** A counter; `value` must not be negative. */
  addCounter(name: string, value: number, dimensions?: Record<string, string>): void;
  /** A time gauge in `ms` (default) or `s`. */
  addTime(name: string, value: number, unit?: 'ms' | 's', dimensions?: Record<string, string>): void;
  /** A size gauge in `MB` (default), `kB`, `GB` or `B`. */
  addSize(name: string, value: number, unit?: 'MB' | 'kB' | 'GB' | 'B', dimensions?: Record<string, string>): void;
  /** A percentage gauge. */
  addPercent(name: string, value: number, dimensions?: Record<string, string>): void;
  /** An error counter, with `Level: Error` instead of `Model`. */
  addError(name: string, value: number, dimensions?: Record<string, string>): void;
  /** A gauge or counter with any unit. */
  addMetric(name: string, value: number, unit: string, type?: 'counter' | 'gauge', dimensions?: Record<string, string>): void;
}

/** The manifest as read from MAR-INF/MANIFEST.json; it comes with the worker's load message. */
export type { HandlerManifest } from '../protocol/messages.js';

/** What a handler sees about its model and the batch it is answering. */
export interface Context {
  readonly modelName: string;
  readonly manifest: HandlerManifest;
  readonly systemProperties: SystemProperties;
  /** model-config.yaml from the archive, parsed; `{}` when there is none. */
  readonly modelYamlConfig: Record<string, unknown>;
  /** Batch index -> request id (the `x-request-id` the client receives). */
  readonly requestIds: Readonly<Record<number, string>>;
  readonly metrics: MetricsApi;
  getRequestId(idx?: number): string | undefined;
  /** A request header by name (case-insensitive), or undefined. */
  getRequestHeader(idx: number, key: string): string | undefined;
  getAllRequestHeaders(idx: number): Readonly<Record<string, string>>;
  /**
   * The sequence a request belongs to, for a stateful model (`sequenceBatching: true` in its
   * model-config.yaml): keep each sequence's state under this id. TorchServe's `get_sequence_id`.
   */
  getSequenceId(idx: number): string | undefined;
  /**
   * When the batch is traced (tracing on, a request of it sampled): the W3C `traceparent` of its
   * batch span, which a call the handler makes to another service passes on so that the call's
   * spans join the requests' trace. Undefined otherwise.
   */
  readonly traceparent: string | undefined;
  /** HTTP status (and optional reason phrase) of request `idx`; TorchServe's argument order. */
  setResponseStatus(code: number, phrase?: string, idx?: number): void;
  setAllResponseStatus(code: number, phrase?: string): void;
  setResponseHeader(idx: number, key: string, value: string): void;
  getResponseHeaders(idx: number): Readonly<Record<string, string>>;
  setResponseContentType(idx: number, value: string): void;
  getResponseContentType(idx: number): string | undefined;
  /**
   * Sends one intermediate answer per request of the batch before the final one, as TorchServe's
   * `send_intermediate_predict_response`; the client receives them as HTTP chunks, in order.
   */
  sendIntermediateResponse(outputs: HandlerOutput[]): void;
}

/** A class handler. */
export interface Handler {
  initialize?(context: Context): void | Promise<void>;
  handle(batch: RequestInput[], context: Context): HandlerOutput[] | Promise<HandlerOutput[]>;
}

/** A function handler: called with `null` once at load time, then per batch. */
export type HandleFunction = (
  batch: RequestInput[] | null,
  context: Context,
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler function may end without a return statement; `void` says so to its author.
) => HandlerOutput[] | null | undefined | void | Promise<HandlerOutput[] | null | undefined | void>;

/**
 * Throw this to answer every request of the batch with `status` and `message`, as TorchServe's
 * `PredictionException(message, error_code)`. Any other error answers 503 "Prediction failed".
 * A client's error (a 4xx) says the handler refused an input before running the model: a batch
 * of several refused so runs again request by request (a stateful model's excepted), so that
 * only the bad requests get it. Throw a 4xx before any work that must not be done twice.
 */
export class PredictionError extends Error {
  readonly status: number;

  constructor(message: string, status = 500) {
    super(message);
    this.name = 'PredictionError';
    this.status = status;
  }
}

/**
 * A batch's inputs refused each for itself (eachInput), by their index in `batch`, the very array
 * that was read: the batch's error is the first one's, and answerBatch answers each refused
 * request with its own and runs the others again as a batch, where a refusal that names no input
 * of the batch the handler was given (eachInput over a slice, say) has each request run alone.
 */
export class InputErrors extends PredictionError {
  readonly errors: ReadonlyMap<number, PredictionError>;
  readonly batch: readonly unknown[];

  constructor(errors: ReadonlyMap<number, PredictionError>, batch: readonly unknown[]) {
    const [first] = errors.values();
    super(first!.message, first!.status);
    this.name = 'InputErrors';
    this.errors = errors;
    this.batch = batch;
  }

  /** The refusals of `batch`'s own requests, by index: none when another array was read. */
  of(batch: readonly unknown[]): ReadonlyMap<number, PredictionError> {
    if (batch !== this.batch) return new Map();
    return new Map([...this.errors].filter(([i, err]) => Number.isInteger(i) && i >= 0 && i < batch.length && err instanceof PredictionError));
  }
}

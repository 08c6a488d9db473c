/**
 * @module errors
 * Every error tsserve can answer with, in one table: its code, the wire `type` TorchServe clients
 * see in `{code, type, message}`, the HTTP status, the gRPC status a gRPC call answers it with
 * (TorchServe's mapping of the HTTP status) and the message template. docs/errors.md is made
 * from it (`npm run docs:errors`). Errors cross the process boundary to workers as
 * `{code, message}` and are rebuilt here, so identity is the code, never the prototype.
 */

interface ErrorSpec {
  /** The Java exception name TorchServe puts in the body's `type`. */
  readonly type: string;
  readonly status: number;
  /** `%s` placeholders are filled in order by the arguments given to `tsError`. */
  readonly message: string;
  /** The gRPC status where TorchServe's gRPC answers other than its mapping of `status` says. */
  readonly grpc?: GrpcStatusName;
}

const table = {
  // http
  TSS_ERR_HTTP_NOT_FOUND: {
    type: 'ResourceNotFoundException',
    status: 404,
    message: 'Requested resource is not found, please refer to API document.',
  },
  TSS_ERR_HTTP_METHOD_NOT_ALLOWED: {
    type: 'MethodNotAllowedException',
    status: 405,
    message: 'Requested method is not allowed, please refer to API document.',
  },
  TSS_ERR_HTTP_BAD_REQUEST: { type: 'BadRequestException', status: 400, message: '%s' },
  TSS_ERR_MODEL_NAME_REQUIRED: { type: 'BadRequestException', status: 400, message: 'Parameter model_name is required.' },
  /** In-band on StreamPredictions2, INTERNAL as TorchServe sends it. */
  TSS_ERR_SEQUENCE_ID_REQUIRED: { type: 'BadRequestException', status: 400, grpc: 'INTERNAL', message: 'Parameter sequenceId is required.' },
  TSS_ERR_HTTP_BODY_TOO_LARGE: {
    type: 'RequestEntityTooLargeException',
    status: 413,
    message: 'Request body is larger than max_request_size (%s bytes).',
  },
  TSS_ERR_HTTP_TOO_MANY_PARTS: {
    type: 'RequestEntityTooLargeException',
    status: 413,
    message: 'Request body has more than %s parts or form fields.',
  },
  TSS_ERR_HTTP_INVALID_TOKEN: {
    type: 'InvalidKeyException',
    status: 400,
    grpc: 'PERMISSION_DENIED',
    message: 'Token Authorization failed. Token either incorrect, expired, or not provided correctly',
  },
  /** The /token endpoint words it "Authentication" (TorchServe's TokenAuthorization). */
  TSS_ERR_HTTP_INVALID_API_KEY: {
    type: 'InvalidKeyException',
    status: 400,
    message: 'Token Authentication failed. Token either incorrect, expired, or not provided correctly',
  },
  // model registry
  TSS_ERR_MODEL_NOT_FOUND: { type: 'ModelNotFoundException', status: 404, message: 'Model not found: %s' },
  TSS_ERR_WORKFLOW_NOT_FOUND: { type: 'WorkflowNotFoundException', status: 404, message: 'Workflow not found: %s' },
  TSS_ERR_MODEL_VERSION_NOT_FOUND: {
    type: 'ModelVersionNotFoundException',
    status: 404,
    message: 'Model version: %s does not exist for model: %s',
  },
  /** set-default words it without colons (TorchServe quirk B10). */
  TSS_ERR_MODEL_DEFAULT_VERSION_NOT_FOUND: {
    type: 'ModelVersionNotFoundException',
    status: 404,
    message: 'Model version %s does not exist for model %s',
  },
  /** torch-model-archiver's words, for a name or a version (archive/model-name.ts). */
  TSS_ERR_MODEL_NAME_INVALID: {
    type: 'BadRequestException',
    status: 400,
    message: 'Model %s contains special characters.\nThe allowed regular expression filter for model %s is: ^[A-Za-z0-9][A-Za-z0-9_\\-.]*$',
  },
  TSS_ERR_MODEL_NAME_TOO_LONG: { type: 'BadRequestException', status: 400, message: 'Model %s is longer than %s characters.' },
  /** A version a config snapshot named that could not be restored: kept, as TorchServe keeps it, with nothing to serve. */
  TSS_ERR_MODEL_RESTORE_FAILED: {
    type: 'ServiceUnavailableException',
    status: 503,
    message: 'Model "%s" version %s could not be restored from the config snapshot: %s. Register its archive again, or unregister it',
  },
  TSS_ERR_MODEL_VERSION_EXISTS: {
    type: 'ConflictStatusException',
    status: 409,
    message: 'Model version %s is already registered for model %s',
  },
  TSS_ERR_MODEL_REMOVE_DEFAULT: {
    type: 'InvalidModelVersionException',
    status: 403,
    message: 'Cannot remove default version for model %s',
  },
  TSS_ERR_MODEL_API_DISABLED: {
    type: 'MethodNotAllowedException',
    status: 405,
    message: 'Requested method is not allowed, please refer to API document.',
  },
  /** The gRPC management service's words for the same refusal. */
  TSS_ERR_GRPC_MODEL_API_DISABLED: { type: 'MethodNotAllowedException', status: 405, grpc: 'PERMISSION_DENIED', message: 'Model API disabled' },
  // archive
  TSS_ERR_ARCHIVE_NO_STORE: { type: 'ModelNotFoundException', status: 404, message: 'Model store has not been configured.' },
  TSS_ERR_ARCHIVE_EMPTY_URL: { type: 'ModelNotFoundException', status: 404, message: 'empty url' },
  TSS_ERR_ARCHIVE_RELATIVE_URL: {
    type: 'ModelNotFoundException',
    status: 404,
    message: 'Relative path is not allowed in url: %s',
  },
  TSS_ERR_ARCHIVE_URL_NOT_ALLOWED: {
    type: 'ModelNotFoundException',
    status: 404,
    message: 'Given URL %s does not match any allowed URL(s)',
  },
  TSS_ERR_ARCHIVE_NOT_FOUND: { type: 'ModelNotFoundException', status: 404, message: 'Model not found at: %s' },
  TSS_ERR_ARCHIVE_EXISTS: { type: 'InternalServerException', status: 500, message: 'Model file already exists %s' },
  TSS_ERR_ARCHIVE_DOWNLOAD_FAILED: {
    type: 'DownloadArchiveException',
    status: 400,
    message: 'Failed to download archive from: %s',
  },
  TSS_ERR_ARCHIVE_INVALID: { type: 'InvalidModelException', status: 400, message: '%s' },
  TSS_ERR_ARCHIVE_UNSAFE_ENTRY: {
    type: 'InvalidModelException',
    status: 400,
    message: 'Archive entry escapes the model directory: %s',
  },
  TSS_ERR_ARCHIVE_BAD_MANIFEST: { type: 'InvalidModelException', status: 400, message: 'Failed to parse signature.json.' },
  TSS_ERR_ARCHIVE_INVALID_RUNTIME: { type: 'BadRequestException', status: 400, message: 'Invalid RuntimeType value: %s' },
  TSS_ERR_MODEL_DEPENDENCIES: { type: 'ModelException', status: 400, message: 'Custom npm package installation failed for model %s: %s' },
  // workers and inference
  TSS_ERR_WORKER_NONE_AVAILABLE: {
    type: 'ServiceUnavailableException',
    status: 503,
    message:
      'Model "%s" has no worker to serve inference request. Please use scale workers API to add workers. ' +
      'If this is a sequence inference, please check if it is closed, or expired; or exceeds maxSequenceJobQueueSize',
  },
  TSS_ERR_WORKER_NONE_FOR_DESCRIBE: {
    type: 'ServiceUnavailableException',
    status: 503,
    message: 'Model "%s" has no worker to serve describe request. Please use scale workers API to add workers.',
  },
  TSS_ERR_CLIENT_TIMEOUT: {
    type: 'ServiceUnavailableException',
    status: 503,
    message: 'Request waited longer than %s ms for a worker of model "%s" (clientTimeoutInMills, default_queue_timeout); it was not run',
  },
  TSS_ERR_WORKER_START_FAILED: {
    type: 'InternalServerException',
    status: 500,
    message: 'Failed to start workers for model %s version: %s',
  },
  TSS_ERR_WORKER_DIED: { type: 'InternalServerException', status: 500, message: 'Worker died.' },
  /** Why a worker did not load its model (the server log says it; the client sees WORKER_START_FAILED). */
  TSS_ERR_WORKER_HANDLER_IMPORT: { type: 'InternalServerException', status: 500, message: 'Handler %s could not be loaded: %s' },
  TSS_ERR_WORKER_ENVELOPE: { type: 'InternalServerException', status: 500, message: 'Envelope %s is not supported by tsserve (supported: %s)' },
  TSS_ERR_WORKER_INITIALIZE: { type: 'InternalServerException', status: 500, message: "The handler's initialize failed: %s" },
  TSS_ERR_SERVER_STOPPING: {
    type: 'ServiceUnavailableException',
    status: 503,
    message: 'tsserve is stopping: it takes no new request, and answers this to one it could not finish within drain_timeout.',
  },
  /**
   * A model that cannot be loaded even after every idle model was unloaded (model_memory_budget_mb,
   * max_loaded_models): 507, the status TorchServe gives running out of resources.
   */
  TSS_ERR_MODEL_NO_ROOM: {
    type: 'InternalServerException',
    status: 507,
    message: 'Model "%s" cannot be loaded: it needs about %s MB and %s (the models loaded now are busy, or it is larger than the budget)',
  },
  TSS_ERR_MODEL_STOPPED: {
    type: 'ServiceUnavailableException',
    status: 503,
    message: 'Model "%s" stopped before it could serve this request (unregistered, or the server is stopping)',
  },
  TSS_ERR_WORKER_SCALE_INVALID: {
    type: 'BadRequestException',
    status: 400,
    message: 'max_worker cannot be less than min_worker.',
  },
  TSS_ERR_WORKER_SCALE_NEGATIVE: {
    type: 'InternalServerException',
    status: 500,
    message: 'min_worker cannot be negative: %s',
  },
  TSS_ERR_WORKER_LIMIT: {
    type: 'BadRequestException',
    status: 400,
    message: '%s=%s is more than the %s workers a model version may have on this server (max_workers_per_model)',
  },
  TSS_ERR_PREDICTION_FAILED: { type: 'InternalServerException', status: 503, message: 'Prediction failed' },
  TSS_ERR_PREDICTION_BAD_OUTPUT: {
    type: 'InternalServerException',
    status: 503,
    message: 'Invalid model predict output',
  },
  TSS_ERR_PREDICTION_BATCH_MISMATCH: {
    type: 'InternalServerException',
    status: 503,
    message: 'number of batch response mismatched',
  },
  TSS_ERR_PREDICTION_UNSUPPORTED_OUTPUT: {
    type: 'InternalServerException',
    status: 503,
    message: 'Unsupported model output data type.',
  },
  TSS_ERR_PREDICTION_NOT_OPEN_INFERENCE: {
    type: 'InternalServerException',
    status: 500,
    message: 'The handler did not answer KServe v2 JSON: serve the model with service_envelope=kservev2',
  },
  /** An answer, a streamed part or the parts' total over max_response_size, refused where it is made and where it is read. */
  TSS_ERR_PREDICTION_RESPONSE_TOO_LARGE: {
    type: 'InternalServerException',
    status: 500,
    message: 'Response is larger than max_response_size (%s bytes).',
  },
  /**
   * A request of a batch its handler refused with a client's error, left over when it could not
   * be run again on its own (handler/run.ts): whose input the refusal was about is not known, or
   * not this one's, so it gets no client's 400. The message says why the batch was refused (for
   * inputs it named, each answered; or quoting a refusal that named none) and why it was not run
   * again (the response timeout; a stateful model).
   */
  TSS_ERR_PREDICTION_NOT_RUN_AGAIN: {
    type: 'ServiceUnavailableException',
    status: 503,
    message: 'This request was not run: its batch was refused %s, and %s. Send it again%s',
  },
  TSS_ERR_PREDICTION_OUT_OF_RESOURCES: { type: 'InternalServerException', status: 507, message: 'Out of resources' },
  /** A status, reason phrase or header no HTTP answer can carry (protocol/answer-head.ts). */
  TSS_ERR_PREDICTION_BAD_ANSWER: { type: 'InternalServerException', status: 500, message: "The handler's answer cannot be sent: %s" },
  /** A handler's own PredictionError: its message and status pass through unchanged. */
  TSS_ERR_PREDICTION_HANDLER: { type: 'InternalServerException', status: 500, message: '%s' },
  TSS_ERR_INTERNAL: { type: 'InternalServerException', status: 500, message: '%s' },
  // config snapshots
  /**
   * A management change is kept (undoing an unregister would bring back a model whose workers are
   * gone) but the disk did not take its snapshot: 507, WebDAV's "cannot store what completes the
   * request", the status TorchServe gives running out of resources.
   */
  TSS_ERR_SNAPSHOT_NOT_SAVED: {
    type: 'InternalServerException',
    status: 507,
    message:
      'The change is in effect but could not be saved in a config snapshot (%s): a restart would not have it. tsserve saves it once the disk takes a snapshot again.',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof table;

export const errorCodes = Object.keys(table) as ErrorCode[];

/** An error that knows how it goes on the wire. */
export class TsError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: string;

  constructor(code: ErrorCode, message: string, status: number = table[code].status) {
    super(message);
    this.name = 'TsError';
    this.code = code;
    this.status = status;
    // A handler's 4xx (PredictionError) travels under a 5xx code: its type must say client error.
    this.type = status < 500 && table[code].status >= 500 ? 'BadRequestException' : table[code].type;
  }

  /** The status a gRPC call that fails with this error ends with. */
  get grpcStatus(): GrpcStatusName {
    const spec: ErrorSpec = table[this.code];
    return spec.grpc !== undefined && this.status === spec.status ? spec.grpc : grpcStatusName(this.status);
  }

  /** The body TorchServe answers errors with. */
  toJSON(): { code: number; type: string; message: string } {
    return { code: this.status, type: this.type, message: this.message };
  }
}

/** The length of a client's name or version that an error message quotes. */
const QUOTED_NAME_LENGTH = 256;

/**
 * A name or version a client gave, as an error message quotes it: its first 256 characters and
 * '…'. A gRPC client may name a model of megabytes (no path segment limits it, as REST's does);
 * quoted whole, its error's grpc-message header would be more than the client's HTTP/2 takes.
 */
export function quotedName(name: string): string {
  return shortened(name, QUOTED_NAME_LENGTH);
}

/** `text`, or its first `max` characters and '…' when it is longer. */
export function shortened(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export function tsError(code: ErrorCode, ...args: Array<string | number>): TsError {
  let i = 0;
  const message = table[code].message.replace(/%s/g, () => String(args[i++] ?? ''));
  return new TsError(code, message);
}

/** Rebuild an error that crossed a process boundary as plain data. */
export function errorFromWire(code: string, message: string, status?: number): TsError {
  const known = (code in table ? code : 'TSS_ERR_INTERNAL') as ErrorCode;
  return new TsError(known, String(message), isErrorStatus(status) ? status : undefined);
}

/**
 * A status an error answer can carry. A handler's PredictionError chooses its own; one outside
 * 400-599 (999, 99, NaN) would throw inside the reply and take the front end down, so the error's
 * own status stands instead.
 */
function isErrorStatus(status: unknown): status is number {
  return Number.isInteger(status) && (status as number) >= 400 && (status as number) <= 599;
}

export function isTsError(err: unknown): err is TsError {
  return err instanceof TsError;
}

/** gRPC status names (grpc-js's `status` enum keys), so this module needs no gRPC import. */
export type GrpcStatusName =
  | 'OK'
  | 'CANCELLED'
  | 'UNKNOWN'
  | 'INVALID_ARGUMENT'
  | 'DEADLINE_EXCEEDED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'OUT_OF_RANGE'
  | 'UNIMPLEMENTED'
  | 'INTERNAL'
  | 'UNAVAILABLE'
  | 'DATA_LOSS'
  | 'UNAUTHENTICATED';

const GRPC_BY_HTTP: Readonly<Record<number, GrpcStatusName>> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  413: 'RESOURCE_EXHAUSTED',
  416: 'OUT_OF_RANGE',
  429: 'RESOURCE_EXHAUSTED',
  499: 'CANCELLED',
  501: 'UNIMPLEMENTED',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

/** TorchServe's mapping of an HTTP status to a gRPC one (other 4xx FAILED_PRECONDITION, 5xx INTERNAL). */
export function grpcStatusName(httpStatus: number): GrpcStatusName {
  if (httpStatus >= 200 && httpStatus < 300) return 'OK';
  const mapped = GRPC_BY_HTTP[httpStatus];
  if (mapped !== undefined) return mapped;
  if (httpStatus >= 400 && httpStatus < 500) return 'FAILED_PRECONDITION';
  return httpStatus >= 500 && httpStatus < 600 ? 'INTERNAL' : 'UNKNOWN';
}

/** docs/errors.md: the table, one row per error. */
export function errorsDoc(): string {
  const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/%s/g, '`<...>`');
  const rows = errorCodes.map((code) => {
    const spec: ErrorSpec = table[code];
    return `| \`${code}\` | ${spec.status} | ${tsError(code).grpcStatus} | \`${spec.type}\` | ${cell(spec.message)} |`;
  });
  return [
    '# Errors',
    '',
    '<!-- Made from src/errors.ts by `npm run docs:errors`; a test keeps the two the same. -->',
    '',
    "Every error tsserve answers with. Over HTTP the body is TorchServe's",
    '`{"code": <status>, "type": "<type>", "message": "<message>"}`; a gRPC call ends with the gRPC',
    'status TorchServe maps that HTTP status to and the message as its details. Exceptions, as in',
    'TorchServe: the gRPC inference service answers every error of its own (a missing model name, an',
    'unknown model or version, a full queue) with INTERNAL; where the gRPC column differs from the',
    "mapping, that is the status on gRPC; and a handler's own error keeps the status it chose (a",
    '`PredictionError` with 4xx is a client error).',
    '`<...>` is filled in from the request.',
    '',
    '| code | HTTP | gRPC | type | message |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

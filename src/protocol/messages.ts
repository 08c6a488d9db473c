/**
 * @module protocol/messages
 * The wire contract between the front end and a worker process: the messages, both ways, as one
 * discriminated union, and the environment a worker starts with. They travel over Node's IPC
 * channel with `serialization: 'advanced'`, so bodies go as bytes, never as JSON-encoded arrays.
 * Both sides, and the handler API, import it, so it imports nothing of theirs.
 */

export interface WireParam {
  readonly name: string;
  /** MIME type without parameters; undefined when the request had none. */
  readonly contentType: string | undefined;
  readonly value: Uint8Array;
}

export interface WireRequest {
  readonly id: string;
  readonly headers: Record<string, string>;
  readonly params: WireParam[];
}

export interface WireResponse {
  readonly id: string;
  readonly status: number;
  readonly phrase: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
  /** The answer was refused where it was made (over max_response_size): the request fails with this; body is empty. */
  readonly error?: WireError;
  /**
   * In an intermediate message, the request's whole answer, not a streamed part: one run alone
   * after its batch was refused, answered as its run ends (handler/run.ts). An answer with an
   * error is final without it.
   */
  readonly final?: true;
}

export interface WireMetric {
  readonly name: string;
  readonly unit: string;
  readonly type: 'counter' | 'gauge';
  readonly value: number;
  readonly dimensions: Record<string, string>;
}

/**
 * One stage of a batch inside the worker: when it began and ended, in milliseconds since the Unix
 * epoch (performance.timeOrigin + performance.now(), the clock both processes share). The front
 * end makes the stage histograms of every batch from these and, when the batch is traced, its
 * spans, children of the batch's span (PredictMessage.trace), with ids of its own making: a
 * traced batch's answer is the same message as any other's.
 */
export interface WireStage {
  readonly name: StageName;
  readonly start: number;
  readonly end: number;
  /**
   * How many of the batch's predictions it ran, for the histograms; absent: all. A batch refused
   * and run again request by request (handler/run.ts's answerBatch) has its own stages for none,
   * each request's for one.
   */
  readonly requests?: number;
}

/** A BaseHandler's three steps; a handler that overrides `handle` as a whole has only `inference`. */
export type StageName = 'preprocess' | 'inference' | 'postprocess';

/**
 * The batch's span, which the worker's stage spans are children of: W3C trace context's fields,
 * which the handler has as its context's `traceparent`, to pass on to the services it calls.
 */
export interface WireTraceContext {
  /** 32 hex digits. */
  readonly traceId: string;
  /** 16 hex digits. */
  readonly spanId: string;
}

export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly status: number;
}

/**
 * The environment variable in which the front end gives a worker its onnxruntime intra-op thread
 * count. It lives here, not beside the sessions, so the front end never loads onnxruntime.
 */
export const INTRA_OP_THREADS_ENV = 'TSSERVE_INTRA_OP_THREADS';
/** The thread count of a lone batch's sessions, set only for a model with adaptiveThreads. */
export const WIDE_INTRA_OP_THREADS_ENV = 'TSSERVE_WIDE_INTRA_OP_THREADS';
/** Set when no parent-death signal guards the worker: it watches its parent itself (worker/parent-watch.ts). */
export const WATCH_PARENT_ENV = 'TSSERVE_WATCH_PARENT';
/**
 * onnxruntime's own switch for its telemetry, on by default in its Linux and macOS builds since
 * 1.29: a device id and an event cache under ~/.cache/Microsoft/DeveloperTools/.onnxruntime,
 * mat-debug-<pid>.log and .ses files in TMPDIR, uploads to mobile.events.data.microsoft.com. The
 * library reads it once, when its environment is created at a process's first session, so every
 * process that may run onnxruntime has it from its start: workers from the front end, other
 * programs from runtime/onnx.ts before their first session (docs/deploy.md, "No telemetry").
 */
export const ORT_TELEMETRY_OFF: Readonly<Record<string, string>> = { ORT_DISABLE_TELEMETRY: '1' };

/**
 * MAR-INF/MANIFEST.json as the front end read it (archive/manifest.ts checks it), as the worker
 * receives it and its handler sees it (handler/types.ts).
 */
export interface HandlerManifest {
  readonly createdOn?: string;
  readonly runtime: string;
  readonly model: {
    readonly modelName?: string;
    readonly modelVersion: string;
    readonly serializedFile?: string;
    readonly handler?: string;
    readonly modelFile?: string;
    readonly configFile?: string;
    readonly requirementsFile?: string;
    readonly description?: string;
  };
  readonly archiverVersion?: string;
}

/**
 * Set for a worker process that may serve several models (a shared host, workers/worker-host.ts):
 * it keeps the directory it started in, as no one model's directory is its own, and a model's
 * warm-up there is two batches, not a second's worth (worker/entry.ts).
 */
export const SHARED_HOST_ENV = 'TSSERVE_SHARED_HOST';

/**
 * Which model a message is for, inside the process: a worker's id. A process started for one
 * worker serves one key; a shared host serves several, one handler and its sessions each.
 */
export interface Keyed {
  readonly key: string;
}

export interface LoadMessage extends Keyed {
  readonly kind: 'load';
  readonly modelName: string;
  readonly modelDir: string;
  readonly manifest: HandlerManifest;
  readonly handler: string;
  readonly batchSize: number;
  readonly yamlConfig: Record<string, unknown>;
  readonly decodeInput: boolean;
  readonly limitMaxImagePixels: boolean;
  readonly serverVersion: string;
  /** `service_envelope`, else the manifest's envelope; `body` or none means none. */
  readonly envelope: string | undefined;
  /** The header that carries a stateful sequence's id (`ts_header_key_sequence_id`). */
  readonly sequenceIdHeader: string;
  /** The most requests a batch of this model may hold: the warm-up runs one batch that size. */
  readonly largestBatch: number;
  /** The largest answer (max_response_size): a larger one is refused before it is sent. */
  readonly maxResponseSize: number;
  /** A batch's response timeout (responseTimeout): a refused batch's requests run alone in its first half. */
  readonly responseTimeoutMs?: number;
}

export interface PredictMessage extends Keyed {
  readonly kind: 'predict';
  readonly batchId: number;
  readonly requests: WireRequest[];
  /** The model's other workers idle and nothing else queued: the batch may use every core (adaptiveThreads). */
  readonly wide: boolean;
  /** Present only when the batch is traced (tracing on, one of its requests sampled). */
  readonly trace?: WireTraceContext;
}

/** Drops a model from its process: its handler and sessions, once its batches sent so far are answered. */
export interface UnloadMessage extends Keyed {
  readonly kind: 'unload';
}

export type ToWorker = LoadMessage | PredictMessage | UnloadMessage;

export type FromWorker = Keyed &
  (
    | {
        readonly kind: 'loaded';
        readonly pid: number;
        /** The most requests the model's sessions take in one run (a fixed batch dimension); absent: any. */
        readonly batchLimit?: number;
      }
    | { readonly kind: 'load-failed'; readonly error: WireError }
    | { readonly kind: 'unloaded' }
    | {
        readonly kind: 'reply';
        readonly batchId: number;
        readonly items: WireResponse[];
        readonly metrics: WireMetric[];
        /**
         * The worker's own milliseconds on the batch, from its arrival here to this reply; absent
         * when its requests ran each alone (answerBatch), which is no batch's time.
         */
        readonly workMs?: number;
        /** The batch's stages in the order they ran. */
        readonly stages: WireStage[];
      }
    | { readonly kind: 'intermediate'; readonly batchId: number; readonly items: WireResponse[] }
    | {
        readonly kind: 'batch-failed';
        readonly batchId: number;
        readonly error: WireError;
        readonly metrics: WireMetric[];
        /** The stages that ended before the failure; the last one may be the one that failed. */
        readonly stages: WireStage[];
      }
  );

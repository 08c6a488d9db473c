/**
 * @module metrics/tracing
 * OpenTelemetry traces of predictions, off by default. On (otel_traces=true, or the standard
 * OTEL_TRACES_EXPORTER=otlp), every prediction, whichever route brought it (REST, KServe, OIP,
 * gRPC: they all enqueue through batching/admission.ts), continues the trace its W3C
 * `traceparent`/`tracestate` headers or metadata name, or starts one:
 *
 *   prediction <model>   (server span: arrival to the answer written)
 *   ├─ queue <model>      (enqueued to its batch leaving for a worker)
 *   └─ batch <model>      (sent to answered; a child of its first sampled request, linked to
 *      ├─ preprocess       every request of the batch, each of which links back to it)
 *      ├─ inference        (the worker's stages, timed there, named and exported from here)
 *      └─ postprocess
 *
 * The worker has no SDK and no exporter: it times its stages for the histograms anyway
 * (protocol/messages.ts WireStage); a traced batch's message carries the batch span's context
 * (PredictMessage.trace), and the front end gives each stage of its answer a span id and exports
 * it as a child of the batch's span. A worker that dies loses no span of a batch it answered, and
 * a traced batch costs it nothing: its answer is the same message as an untraced one's, with no
 * id to make, send or read (bench/tracing.mjs --profile measured the worker's ids and their
 * bytes at about 1-2 µs an answer).
 *
 * No span goes through the SDK's tracer: a prediction's spans are intervals whose ends the front
 * end learns (arrival, enqueue, the batch leaving, the worker's timings, the answer), so each
 * request and batch keeps a handful of numbers and, once ended, is written at once into the body
 * of an OTLP export (metrics/otlp-spans.ts: the bytes ProtobufTraceSerializer would write for the
 * same spans, without an SDK span, attributes object or HrTime per span). The bodies leave as
 * the SDK's BatchSpanProcessor would send its spans (OTEL_BSP_*: a queue at most so long, exports
 * of at most so many spans, every so many ms, one at a time), through the OTLP exporter's own
 * HTTP transport, retries and timeout. The sampler decides at arrival, as the tracer would. Ids
 * are bytes from the moment they are made to the export (IdBlocks: a block of random bytes at a
 * time, a slot of it per request and per batch; a client's traceparent's read from its hex once),
 * their hex only for the response header, the access line and the worker: slices of the
 * block's hex. A model's span names and attributes are written once (ModelFields) and copied
 * into each of its spans. Per request, that leaves the sampler's call and a slot of ids on the
 * request's path, and a few hundred bytes written once it is answered (bench/tracing.mjs
 * measures it).
 *
 * With tracing off, `Tracing.fromConfig` answers undefined and nothing here runs: no object is made
 * per request (a job's `trace` stays undefined, a batch message has no `trace`).
 *
 * Configuration is OpenTelemetry's own: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT,
 * _HEADERS, _TIMEOUT, _COMPRESSION; the sampler is OTEL_TRACES_SAMPLER (+_ARG), parsed here as the
 * specification says (the SDK leaves that to its Node distribution, which would bring
 * auto-instrumentation we do not want); the resource is OTEL_SERVICE_NAME and
 * OTEL_RESOURCE_ATTRIBUTES over service.name=tsserve.
 */
import {
  DiagLogLevel,
  defaultTextMapGetter,
  diag,
  isSpanContextValid,
  ROOT_CONTEXT,
  SamplingDecision,
  SpanKind,
  TraceFlags,
  trace,
  type SpanContext,
} from '@opentelemetry/api';
import { randomFillSync } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { ProtobufTraceSerializer, type IExportTraceServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer';
import { defaultResource, envDetector, detectResources, resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler, type Sampler } from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { OtlpSpans, TEXT_LENGTH_LIMIT, type TraceBytes } from './otlp-spans.js';
import type { StageName, WireStage, WireTraceContext } from '../protocol/messages.js';
import { VERSION } from '../version.js';

/** The settings of ours tracing reads (config/server-config.ts). */
export interface TracingConfig {
  readonly otelTraces: boolean;
  readonly otelTraceHeader: string;
}

/** The attributes tsserve puts on its spans. */
const ATTR_MODEL = 'tsserve.model.name';
const ATTR_VERSION = 'tsserve.model.version';
const ATTR_REQUEST_ID = 'tsserve.request.id';
const ATTR_BATCH_SIZE = 'tsserve.batch.size';
const ATTR_WORKER = 'tsserve.worker.id';
const ATTR_STATUS = 'http.response.status_code';

/** The server log, as tracing writes to it. */
export interface TracingLog {
  info(message: string): void;
  warn(message: string): void;
}

/**
 * How long a stop waits for the collector to take the spans still buffered, in milliseconds: a
 * collector that is down or never answers would otherwise hold the stop for the exporter's
 * retries and timeout (10 s). Spans are dropped, never held (docs/tracing.md).
 */
export const STOP_FLUSH_MS = 1000;

/**
 * Spans held for export at most, and sent in one export at most, unless OTEL_BSP_MAX_QUEUE_SIZE
 * and OTEL_BSP_MAX_EXPORT_BATCH_SIZE say otherwise: four times the specification's 2048 and 512.
 * A prediction makes two or three spans: at 1,000 predictions a second the specification's
 * sizes are five HTTP exports a second, each a cost of its own, and a queue that overflows when
 * one takes 0.7 s; these, about one export a second of 350 kB, and 3 s.
 */
const MAX_QUEUE_SIZE = 8192;
const MAX_EXPORT_BATCH_SIZE = 2048;

/**
 * Bytes of spans held for export at most, and sent in one export at most: spans of ordinary
 * sizes (a few hundred bytes) reach the span counts first (8192 spans are about 1.5 MB); spans
 * of long texts (names cut at OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, which an operator may raise)
 * are dropped past these, as past the counts, rather than held without bound, and never make
 * an export larger than a collector takes (its default limits are 4 MiB and more).
 */
const MAX_QUEUE_BYTES = 4 * 1024 * 1024;
const MAX_EXPORT_BYTES = 1024 * 1024;

/** The instrumentation scope of every span: tsserve's. */
const SCOPE = { name: 'tsserve', version: VERSION };

/** The model a span is about. */
export interface TracedModel {
  readonly name: string;
  readonly version: string;
}

/** The exporters OTEL_TRACES_EXPORTER names, lowercased. */
function exportersOf(env: NodeJS.ProcessEnv): string[] {
  return (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter(Boolean);
}

/** The exporters and the OTLP protocol tsserve has. */
const SUPPORTED_EXPORTERS = ['otlp', 'none'];
const SUPPORTED_PROTOCOL = 'http/protobuf';

/** Whether the OTEL_* variables and otel_traces turn tracing on. */
export function tracingWanted(config: TracingConfig, env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = exportersOf(env);
  if (exporters.includes('none')) return false;
  return config.otelTraces || exporters.includes('otlp');
}

/**
 * What the OTEL_* variables ask for that tsserve does not do, one line each for the start-up
 * log: an exporter other than otlp (zipkin, console ...; alone, it leaves tracing off), and with
 * tracing on an OTLP protocol other than http/protobuf (grpc, http/json), which spans do not go as.
 */
export function unsupportedSettings(on: boolean, env: NodeJS.ProcessEnv): string[] {
  const lines: string[] = [];
  const unknown = exportersOf(env).filter((e) => !SUPPORTED_EXPORTERS.includes(e));
  if (unknown.length > 0) {
    const effect = on ? 'ignored' : 'traces are off';
    lines.push(`OpenTelemetry: OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER}: ${unknown.join(', ')} not supported (otlp or none), ${effect}`);
  }
  const variable = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = env[variable]?.trim().toLowerCase();
  if (on && protocol && protocol !== SUPPORTED_PROTOCOL) {
    lines.push(`OpenTelemetry: ${variable}=${env[variable]} not supported: spans go as OTLP/HTTP protobuf (${SUPPORTED_PROTOCOL})`);
  }
  return lines;
}

/**
 * OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as the specification reads them; the default,
 * and an unknown name, is parentbased_always_on.
 */
export function samplerFromEnv(env: NodeJS.ProcessEnv): Sampler {
  const name = (env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on').trim().toLowerCase();
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG);
  const ratio = () => new TraceIdRatioBasedSampler(Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1);
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** The `00-<trace id>-<span id>-<flags>` form of a span's context (traceparent's, traceresponse's). */
export function traceHeaderOf(context: SpanContext): string {
  return traceHeader(context.traceId, context.spanId, context.traceFlags);
}

function traceHeader(traceId: string, spanId: string, traceFlags: number): string {
  return `00-${traceId}-${spanId}-${traceFlags & TraceFlags.SAMPLED ? '01' : '00'}`;
}

/** A request that ran in no batch yet, and a batch none of whose stages was traced: shared, never changed. */
const NONE: never[] = Object.freeze([]) as unknown as never[];
/** The attributes a request's sampler is given: none, shared. */
const NO_ATTRIBUTES = Object.freeze({});

/** Bytes of random ids made at a time. */
const ID_BLOCK_SIZE = 64 * 1024;

/**
 * Random bytes for trace and span ids, made a block at a time (one randomFillSync and one hex
 * string of it) and handed out in slots: a request's or a batch's ids are bytes of a block,
 * written into its spans as they are (OtlpSpans' TraceBytes), and their hex, for a header, an
 * access line or a worker, slices of the block's hex. The SDK's generator made each id of
 * Math.random calls and a hex string of its own, which the spans' writer read back into bytes.
 * A block is never refilled: slots of it live as long as their requests. (An id of all zeros,
 * invalid, is as likely as 64 or 128 random bits make it.)
 */
class IdBlocks {
  ids = Buffer.alloc(0);
  hex = '';
  private next = 0;

  /** A slot of `bytes` random bytes: its place in `ids` (read after it, a block may have been made). */
  take(bytes: number): number {
    if (this.next + bytes > this.ids.length) {
      this.ids = Buffer.allocUnsafeSlow(Math.max(ID_BLOCK_SIZE, bytes));
      randomFillSync(this.ids);
      this.hex = this.ids.toString('hex');
      this.next = 0;
    }
    const at = this.next;
    this.next += bytes;
    return at;
  }

  /** The hex of `bytes` bytes at `at` of the block now: a slice of its hex. */
  hexOf(at: number, bytes: number): string {
    return this.hex.slice(2 * at, 2 * (at + bytes));
  }
}

/** Copies `bytes` bytes of `from` at `fromAt` into `to` at `toAt`: an id from one slot to another. */
function copyId(from: Uint8Array, fromAt: number, to: Uint8Array, toAt: number, bytes: number): void {
  for (let i = 0; i < bytes; i++) to[toAt + i] = from[fromAt + i]!;
}

/**
 * A request's slot of ids (IdBlocks): its trace id, its server span's, its queue span's, and the
 * client's span (its parent) when a traceparent named one.
 */
const REQUEST_SPAN = 16;
const REQUEST_QUEUE = 24;
const REQUEST_PARENT = 32;
const REQUEST_SLOT = 40;
/** A batch's slot: its trace id (its first sampled request's), its span's, its parent's (that request's span). */
const BATCH_SPAN = 16;
const BATCH_PARENT = 24;
const BATCH_SLOT = 32;

/**
 * One prediction's spans: the server's, from its request's arrival to its answer, and, once its
 * batch leaves (or it is answered first), its wait in the queue. The sampler decides when it
 * starts, as the SDK's tracer would (the client's traceparent its parent). A sampled one keeps
 * its times and, once answered, is written for export (Tracing.finished).
 */
export class RequestTrace implements TraceBytes {
  /** Its ids' slot (REQUEST_*). */
  readonly ids: Uint8Array;
  readonly at: number;
  readonly traceFlags: number;
  readonly traceState: string | undefined;
  /** 32 hex digits. */
  readonly traceId: string;
  /** The response header's value: traceHeaderOf the server span. */
  readonly header: string;
  readonly sampled: boolean;
  private readonly tracing: Tracing;
  /** Its model's names and attributes. */
  private readonly fields: ModelFields;
  private readonly requestId: string;
  /** Whether a client's span is its parent (REQUEST_PARENT). */
  private readonly hasParent: boolean;
  /** performance.now() times: arrived, enqueued, left the queue, answered. */
  private readonly arrivedAt: number;
  private readonly enqueuedAt: number;
  private dequeuedAt: number | undefined;
  private endedAt = 0;
  private status = 0;
  private message: string | undefined;
  /** The batches it ran in (one, or more after a worker died). */
  private batches: BatchTrace[] = NONE;

  /** Its ids at `at` of `ids` (REQUEST_*), their hex `traceId` and `spanId`. */
  constructor(
    tracing: Tracing,
    fields: ModelFields,
    requestId: string,
    ids: Uint8Array,
    at: number,
    traceId: string,
    spanId: string,
    traceFlags: number,
    traceState: string | undefined,
    hasParent: boolean,
    arrivedAt: number,
  ) {
    this.tracing = tracing;
    this.fields = fields;
    this.requestId = requestId;
    this.ids = ids;
    this.at = at;
    this.traceId = traceId;
    this.traceFlags = traceFlags;
    this.traceState = traceState;
    this.hasParent = hasParent;
    this.arrivedAt = arrivedAt;
    this.enqueuedAt = performance.now();
    this.sampled = (traceFlags & TraceFlags.SAMPLED) !== 0;
    this.header = traceHeader(traceId, spanId, traceFlags);
  }

  /** Its batch left for a worker, or it was answered while queued (performance.now() time); the first time counts. */
  leftQueue(at = performance.now()): void {
    this.dequeuedAt ??= at;
  }

  /** It ran in `batch`: its span links to the batch's. */
  ranIn(batch: BatchTrace): void {
    this.batches = this.batches === NONE ? [batch] : [...this.batches, batch];
  }

  /** Answered with `status`; an error's message becomes the span's status. */
  end(status: number, message?: string): void {
    if (this.endedAt !== 0) return;
    this.endedAt = performance.now();
    this.leftQueue(this.endedAt);
    this.status = status;
    this.message = message;
    if (this.sampled) this.tracing.finished(this);
  }

  /** Its queue's span and its own, written for export. */
  write(spans: OtlpSpans): void {
    const { fields, at } = this;
    const span = at + REQUEST_SPAN;
    spans.begin(fields.queue, this, at + REQUEST_QUEUE, span, false, SpanKind.INTERNAL, epochOf(this.enqueuedAt), epochOf(this.dequeuedAt ?? this.endedAt));
    spans.end(undefined);
    // Its start's clock (epochOf), not Date.now(): whole milliseconds of another clock would end
    // it before its children, or before it started.
    const parent = this.hasParent ? at + REQUEST_PARENT : -1;
    spans.begin(fields.prediction, this, span, parent, this.hasParent, SpanKind.SERVER, epochOf(this.arrivedAt), epochOf(this.endedAt));
    spans.fields(fields.modelVersion);
    spans.attribute(ATTR_REQUEST_ID, this.requestId);
    spans.attribute(ATTR_STATUS, this.status);
    for (const batch of this.batches) spans.link(batch, batch.at + BATCH_SPAN);
    spans.end(this.status >= 500 ? (this.message ?? '') : undefined);
  }
}

/**
 * A batch's span, from its leaving for a worker to the worker's answer, and what the worker's
 * stages need to be its children. A child of a sampled request, it is sampled with it (each of
 * the six samplers decides a child of a sampled span so); once ended it is written for export
 * (Tracing.finished).
 */
export class BatchTrace implements TraceBytes {
  readonly wire: WireTraceContext;
  /** Its ids' slot (BATCH_*). */
  readonly ids: Uint8Array;
  readonly at: number;
  readonly traceFlags: number;
  readonly traceState: string | undefined;
  private readonly tracing: Tracing;
  /** Its model's names and attributes. */
  private readonly fields: ModelFields;
  private readonly workerId: string;
  private readonly requests: readonly RequestTrace[];
  private readonly size: number;
  /** performance.now() times. */
  private readonly startedAt: number;
  private endedAt = 0;
  private stages: readonly WireStage[] = NONE;
  private error: string | undefined;

  constructor(tracing: Tracing, fields: ModelFields, workerId: string, sampled: readonly RequestTrace[], size: number, at: number) {
    this.tracing = tracing;
    this.fields = fields;
    this.workerId = workerId;
    this.requests = sampled;
    this.size = size;
    this.startedAt = at;
    const first = sampled[0]!;
    const blocks = tracing.idBlocks;
    this.at = blocks.take(BATCH_SLOT);
    this.ids = blocks.ids;
    copyId(first.ids, first.at, this.ids, this.at, 16);
    copyId(first.ids, first.at + REQUEST_SPAN, this.ids, this.at + BATCH_PARENT, 8);
    this.traceFlags = first.traceFlags;
    this.traceState = first.traceState;
    this.wire = { traceId: first.traceId, spanId: blocks.hexOf(this.at + BATCH_SPAN, 8) };
  }

  get ended(): boolean {
    return this.endedAt !== 0;
  }

  /** The worker answered (or failed: `error`); its stages become the batch span's children. Once. */
  end(stages: readonly WireStage[], error?: string): void {
    if (this.endedAt !== 0) return;
    this.endedAt = performance.now();
    this.stages = stages;
    this.error = error;
    this.tracing.finished(this);
  }

  /** The worker's stages' spans and its own, written for export. */
  write(spans: OtlpSpans): void {
    const { stages, error } = this;
    if (stages.length > 0) this.writeStages(spans, stages, error);
    const { fields } = this;
    spans.begin(fields.batch, this, this.at + BATCH_SPAN, this.at + BATCH_PARENT, false, SpanKind.INTERNAL, epochOf(this.startedAt), epochOf(this.endedAt));
    spans.fields(fields.model);
    spans.attribute(ATTR_BATCH_SIZE, this.size);
    spans.attribute(ATTR_WORKER, this.workerId);
    for (const r of this.requests) spans.link(r, r.at + REQUEST_SPAN);
    spans.end(error);
  }

  /**
   * The stages' spans, children of the batch's: a slot of their own (however many stages a worker
   * sent), the batch's trace id and span id copied into it, then a span id for each.
   */
  private writeStages(spans: OtlpSpans, stages: readonly WireStage[], error: string | undefined): void {
    const blocks = this.tracing.idBlocks;
    const at = blocks.take(24 + 8 * stages.length);
    const trace: TraceBytes = { ids: blocks.ids, at, traceFlags: this.traceFlags, traceState: this.traceState };
    copyId(this.ids, this.at, trace.ids, at, 24);
    for (const [i, s] of stages.entries()) {
      const failed = error !== undefined && i === stages.length - 1;
      spans.begin(this.tracing.stageName(s.name), trace, at + 24 + 8 * i, at + BATCH_SPAN, false, SpanKind.INTERNAL, s.start, s.end);
      spans.end(failed ? error : undefined);
    }
  }
}

/**
 * A model's span names and attributes, written for OTLP once: the same bytes each of its spans
 * copies, rather than its texts written a character at a time per span.
 */
export class ModelFields {
  readonly name: string;
  readonly version: string;
  /** Its server span's name, for the sampler. */
  readonly predictionName: string;
  readonly queue: Uint8Array;
  readonly prediction: Uint8Array;
  readonly batch: Uint8Array;
  /** Its name's attribute. */
  readonly model: Uint8Array;
  /** Its name's and its version's attributes. */
  readonly modelVersion: Uint8Array;

  constructor(spans: OtlpSpans, { name, version }: TracedModel) {
    this.name = name;
    this.version = version;
    this.predictionName = `prediction ${name}`;
    this.queue = spans.nameField(`queue ${name}`);
    this.prediction = spans.nameField(this.predictionName);
    this.batch = spans.nameField(`batch ${name}`);
    this.model = spans.attributeField(ATTR_MODEL, name);
    const versionField = spans.attributeField(ATTR_VERSION, version);
    this.modelVersion = new Uint8Array(this.model.length + versionField.length);
    this.modelVersion.set(this.model);
    this.modelVersion.set(versionField, this.model.length);
  }
}

/** performance.timeOrigin, read once: a getter of Node's, four reads a prediction. */
const TIME_ORIGIN = performance.timeOrigin;

/** A performance.now() time as milliseconds since the epoch, which spans' start and end take. */
function epochOf(at: number): number {
  return TIME_ORIGIN + at;
}

/** An export's body (OtlpSpans.take) and how many spans it holds. */
export interface SpanExport {
  readonly body: Uint8Array;
  readonly count: number;
}

/** What sends export bodies to the collector: the OTLP exporter's transport (otlpExporter), or a test's. */
export interface SpanExporter {
  export(spans: SpanExport, done: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
}

/**
 * The OTLP exporter's HTTP transport, retries, timeout, headers and compression, configured from
 * the OTEL_EXPORTER_OTLP_* variables as OTLPTraceExporter configures them, sending bodies that
 * OtlpSpans wrote instead of serializing SDK spans.
 */
function otlpExporter(): SpanExporter {
  const serializer: ISerializer<SpanExport, IExportTraceServiceResponse> = {
    serializeRequest: (spans) => spans.body,
    deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
  };
  const options = convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' });
  const counted = { name: 'span' as const, countItems: (spans: SpanExport) => spans.count };
  return new OTLPExporterBase(createOtlpHttpExportDelegate(options, serializer, 'otlp_http_span_exporter', counted, undefined));
}

export class Tracing {
  /** The response header of a traced prediction; '' for none. */
  readonly header: string;
  private readonly exporter: SpanExporter;
  private readonly sampler: Sampler;
  private readonly propagator = new W3CTraceContextPropagator();
  /** Where trace and span ids come from. */
  readonly idBlocks = new IdBlocks();
  private readonly stageNames: Readonly<Record<StageName, Uint8Array>>;
  /** Each model's span names and attributes, written once (ModelFields). */
  private readonly models = new WeakMap<TracedModel, ModelFields>();
  /** Spans written and not yet exported, as the batch span processor holds them (OTEL_BSP_*). */
  private readonly spans: OtlpSpans;
  private readonly scheduledDelay: number;
  private readonly exportTimeout: number;
  private readonly maxQueueSize: number;
  private readonly maxExportBatchSize: number;
  private exportTimer: NodeJS.Timeout | undefined;
  /** Predictions and batches finished in the task now running, their spans not yet written (finished). */
  private readonly pending: Array<RequestTrace | BatchTrace> = [];
  private exporting: Promise<void> | undefined;
  private stopped = false;
  /** Spans finished, spans the collector took, spans dropped since the last warning of a full queue. */
  private ended = 0;
  private exported = 0;
  private dropped = 0;

  /** How long a stop waits for the collector: STOP_FLUSH_MS unless told (a test's collector that never answers). */
  private readonly stopFlushMs: number;

  constructor(config: TracingConfig, exporter: SpanExporter, sampler: Sampler, env: NodeJS.ProcessEnv = process.env, stopFlushMs = STOP_FLUSH_MS) {
    this.header = config.otelTraceHeader;
    this.stopFlushMs = stopFlushMs;
    this.exporter = exporter;
    this.sampler = sampler;
    this.scheduledDelay = numberOr(env.OTEL_BSP_SCHEDULE_DELAY, 5000);
    this.exportTimeout = numberOr(env.OTEL_BSP_EXPORT_TIMEOUT, 30_000);
    this.maxQueueSize = numberOr(env.OTEL_BSP_MAX_QUEUE_SIZE, MAX_QUEUE_SIZE);
    this.maxExportBatchSize = Math.max(1, Math.min(this.maxQueueSize, numberOr(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, MAX_EXPORT_BATCH_SIZE)));
    const resource = defaultResource()
      .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'tsserve', [ATTR_SERVICE_VERSION]: VERSION }))
      .merge(detectResources({ detectors: [envDetector] }));
    this.spans = new OtlpSpans(resource, SCOPE, textLengthLimit(env));
    this.stageNames = {
      preprocess: this.spans.nameField('preprocess'),
      inference: this.spans.nameField('inference'),
      postprocess: this.spans.nameField('postprocess'),
    };
  }

  /**
   * Tracing as the config and the OTEL_* variables want it; undefined when off. The log says
   * where spans go, and warns of what OpenTelemetry reports (an export that failed: the collector
   * down), each message once.
   */
  static fromConfig(config: TracingConfig, log: TracingLog, env: NodeJS.ProcessEnv = process.env): Tracing | undefined {
    const on = tracingWanted(config, env);
    for (const line of unsupportedSettings(on, env)) log.warn(line);
    if (!on) return undefined;
    const sampler = samplerFromEnv(env);
    reportDiagnostics((message) => log.warn(message));
    log.info(`OpenTelemetry traces on: OTLP/HTTP to ${tracesEndpoint(env)}, sampler ${sampler.toString()}`);
    return new Tracing(config, otlpExporter(), sampler, env);
  }

  /**
   * A prediction's job is made (its request arrived at `arrivedAt`): its server span continues
   * the client's trace, sampled as the sampler decides, as the SDK's tracer starts a span.
   */
  startRequest(model: TracedModel, requestId: string, headers: Readonly<Record<string, string>>, arrivedAt: number): RequestTrace {
    const context = headers.traceparent === undefined ? ROOT_CONTEXT : this.propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    const remote = trace.getSpanContext(context);
    const parent = remote && isSpanContextValid(remote) ? remote : undefined;
    const blocks = this.idBlocks;
    const at = blocks.take(REQUEST_SLOT);
    const { ids } = blocks;
    let traceId: string;
    if (parent) {
      // The client's ids, read from their hex once, into the slot the spans are written from.
      traceId = parent.traceId;
      ids.write(traceId, at, 16, 'hex');
      ids.write(parent.spanId, at + REQUEST_PARENT, 8, 'hex');
    } else {
      traceId = blocks.hexOf(at, 16);
    }
    const fields = this.fieldsOf(model);
    const sampling = this.sampler.shouldSample(context, traceId, fields.predictionName, SpanKind.SERVER, NO_ATTRIBUTES, NONE);
    const traceState = (sampling.traceState ?? parent?.traceState)?.serialize() || undefined;
    const traceFlags = sampling.decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE;
    const spanId = blocks.hexOf(at + REQUEST_SPAN, 8);
    return new RequestTrace(this, fields, requestId, ids, at, traceId, spanId, traceFlags, traceState, parent !== undefined, arrivedAt);
  }

  /**
   * A batch leaves for worker `workerId` at `at` (performance.now()): its requests leave their
   * queues, and, when one of them is sampled, the batch gets its span; undefined otherwise.
   */
  startBatch(model: TracedModel, workerId: string, traces: readonly RequestTrace[], at: number): BatchTrace | undefined {
    for (const t of traces) t.leftQueue(at);
    const sampled = traces.filter((t) => t.sampled);
    const first = sampled[0];
    if (!first) return undefined;
    const batch = new BatchTrace(this, this.fieldsOf(model), workerId, sampled, traces.length, at);
    for (const t of sampled) t.ranIn(batch);
    return batch;
  }

  /** A worker stage's span name, written for OTLP once. */
  stageName(name: StageName): Uint8Array {
    return this.stageNames[name];
  }

  /** What `model`'s spans share, written for OTLP once (while its name and version stay). */
  fieldsOf(model: TracedModel): ModelFields {
    const known = this.models.get(model);
    if (known && known.name === model.name && known.version === model.version) return known;
    const fields = new ModelFields(this.spans, model);
    this.models.set(model, fields);
    return fields;
  }

  /**
   * A sampled prediction was answered, or a traced batch ended: its spans are written for export
   * once the task that ended it is over (writePending), so that nothing of it outlives its
   * request (an object held for later is one the garbage collector moves and then collects in
   * the old generation), yet a batch's answers all go out before any of its spans is written:
   * its batch's span (four spans) and each answer's were written before the next answer left,
   * delaying a batch's last answer by the spans of all. (The CPU is the same: the kernel's share
   * of the front end's, which a batch's answers spread in time might have raised, was the same
   * with tracing off and on before this change, bench/tracing.mjs --profile.)
   */
  finished(trace: RequestTrace | BatchTrace): void {
    if (this.stopped) return;
    this.pending.push(trace);
    if (this.pending.length === 1) queueMicrotask(this.writePending);
  }

  private readonly writePending = (): void => {
    const { pending } = this;
    for (let i = 0; i < pending.length; i++) this.write(pending[i]!);
    pending.length = 0;
  };

  /**
   * A finished prediction's or batch's spans written for export; past OTEL_BSP_MAX_QUEUE_SIZE
   * spans waiting (or MAX_QUEUE_BYTES), dropped, as the batch span processor drops them.
   */
  private write(trace: RequestTrace | BatchTrace): void {
    const mark = this.spans.mark();
    trace.write(this.spans);
    const written = this.spans.count - mark.count;
    this.ended += written;
    if (this.spans.count > this.maxQueueSize || this.spans.bytes > MAX_QUEUE_BYTES) {
      this.spans.undo(mark);
      if (this.dropped === 0) diag.debug('maxQueueSize reached, dropping spans');
      this.dropped += written;
      return;
    }
    if (this.dropped > 0) {
      diag.warn(`Dropped ${this.dropped} spans because maxQueueSize reached`);
      this.dropped = 0;
    }
    this.scheduleExport();
  }

  /** As the batch span processor: an export at once when a batch's worth waits, else after OTEL_BSP_SCHEDULE_DELAY; one at a time. */
  private scheduleExport(): void {
    if (this.exporting || this.stopped) return;
    if (this.spans.count >= this.maxExportBatchSize) {
      this.exportOne();
      return;
    }
    if (this.exportTimer === undefined && this.spans.count > 0) this.exportTimer = setTimeout(() => this.exportOne(), this.scheduledDelay).unref();
  }

  private exportOne(): void {
    this.exporting = this.exportBatch().finally(() => {
      this.exporting = undefined;
      this.scheduleExport();
    });
  }

  /** One export of up to OTEL_BSP_MAX_EXPORT_BATCH_SIZE spans; a failure is said through diag, as the SDK says it. */
  private exportBatch(): Promise<void> {
    clearTimeout(this.exportTimer);
    this.exportTimer = undefined;
    const batch = this.spans.take(this.maxExportBatchSize, MAX_EXPORT_BYTES);
    if (!batch) return Promise.resolve();
    return new Promise<void>((resolve) => {
      // Held, as the batch span processor holds it: an export under way keeps the process.
      const timer = setTimeout(() => {
        diag.error('Timeout');
        resolve();
      }, this.exportTimeout);
      this.exporter.export(batch, (result) => {
        clearTimeout(timer);
        if (result.code === ExportResultCode.SUCCESS) this.exported += batch.count;
        else diag.error(result.error?.message ?? 'span export failed');
        resolve();
      });
    });
  }

  /**
   * Exports what is buffered and stops: the server's stop. Waits STOP_FLUSH_MS at most (unless told), then
   * says in one line how many spans never reached the collector.
   */
  async shutdown(warn: (message: string) => void): Promise<void> {
    this.writePending();
    this.stopped = true;
    const flushed = this.exportAll().then(() =>
      this.exporter.shutdown().then(
        () => true,
        () => true,
      ),
    );
    const inTime = await Promise.race([flushed, delay(this.stopFlushMs, false, { ref: false })]);
    const dropped = this.ended - this.exported;
    if (dropped > 0) {
      const why = inTime ? 'the collector refused them or was down' : `the collector did not take them within ${this.stopFlushMs} ms of the stop`;
      warn(`OpenTelemetry: ${dropped} of ${this.ended} spans dropped, not exported: ${why}`);
    }
  }

  /** Every span written exported, an export at a time. */
  private async exportAll(): Promise<void> {
    await this.exporting;
    while (this.spans.count > 0) await this.exportBatch();
  }
}

/** Where the OTLP exporter sends spans, as it reads the variables (for the start-up line). */
function tracesEndpoint(env: NodeJS.ProcessEnv): string {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  return env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || (base ? `${base.replace(/\/$/, '')}/v1/traces` : 'http://localhost:4318/v1/traces');
}

/**
 * OpenTelemetry's warnings and errors (an export the collector refused or never answered) to the
 * server log, each message once: a collector that is down fails every export, every few seconds.
 */
function reportDiagnostics(warn: (message: string) => void): void {
  const said = new Set<string>();
  const once = (message: string, ...args: unknown[]): void => {
    const text = [message, ...args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : JSON.stringify(a)))].join(' ');
    if (said.has(text) || said.size >= 100) return;
    said.add(text);
    warn(`OpenTelemetry: ${text}`);
  };
  const quiet = (): void => {};
  diag.setLogger({ error: once, warn: once, info: quiet, debug: quiet, verbose: quiet }, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
}

/**
 * The length spans' texts are cut to: OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT or
 * OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, as the SDK reads them, else TEXT_LENGTH_LIMIT (the SDK's
 * default is no limit, which would let a client's model name of megabytes into every span).
 */
function textLengthLimit(env: NodeJS.ProcessEnv): number {
  const limit = numberOr(env.OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT ?? env.OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, TEXT_LENGTH_LIMIT);
  return Math.max(1, Math.floor(limit));
}

function numberOr(text: string | undefined, fallback: number): number {
  const n = Number(text);
  return text !== undefined && Number.isFinite(n) && n >= 0 ? n : fallback;
}

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
 *      ├─ inference        (the worker's stages, spans the worker names, exported from here)
 *      └─ postprocess
 *
 * The worker has no SDK and no exporter: it times its stages for the histograms anyway
 * (protocol/messages.ts WireStage), and in a traced batch (PredictMessage.trace) gives each a
 * span id; the front end exports them as children of the batch's span. A worker that dies loses
 * no span of a batch it answered, and costs nothing more per batch than its timings.
 *
 * No span goes through the SDK's tracer: a prediction's spans are intervals whose ends the front
 * end learns (arrival, enqueue, the batch leaving, the worker's timings, the answer), so each
 * request and batch keeps a handful of numbers and, once ended, waits with others (DRAIN_AT, or
 * DRAIN_MS) to be made into finished spans that the SDK's BatchSpanProcessor and OTLP exporter
 * take as they take the SDK's own. The sampler decides at arrival, as the tracer would; ids are
 * the SDK's generator's. Per request, that leaves the sampler's call and two ids on the request's
 * path; making the spans and serializing them happen together, for many predictions at a time
 * (bench/tracing.mjs measures both).
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
  SpanStatusCode,
  TraceFlags,
  trace,
  type Attributes,
  type HrTime,
  type Link,
  type SpanContext,
  type SpanStatus,
} from '@opentelemetry/api';
import { setTimeout as delay } from 'node:timers/promises';
import { ExportResultCode, millisToHrTime, hrTimeDuration, W3CTraceContextPropagator, type InstrumentationScope } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, envDetector, detectResources, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  RandomIdGenerator,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { WireStage, WireTraceContext } from '../protocol/messages.js';
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
 * Ended predictions and batches wait to be made into spans until this many have (about three
 * spans each), or this many milliseconds (OTEL_BSP_SCHEDULE_DELAY, if shorter).
 */
const DRAIN_AT = 128;
const DRAIN_MS = 100;

/**
 * Spans held for export at most, and sent in one export at most, unless OTEL_BSP_MAX_QUEUE_SIZE
 * and OTEL_BSP_MAX_EXPORT_BATCH_SIZE say otherwise: four times the specification's 2048 and 512.
 * A prediction makes two or three spans: at 1,000 predictions a second the specification's
 * sizes are five HTTP exports a second, each a cost of its own, and a queue that overflows when
 * one takes 0.7 s; these, about one export a second of 350 kB, and 3 s.
 */
const MAX_QUEUE_SIZE = 8192;
const MAX_EXPORT_BATCH_SIZE = 2048;

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
  return `00-${context.traceId}-${context.spanId}-${context.traceFlags & TraceFlags.SAMPLED ? '01' : '00'}`;
}

/** What a span that did not fail has as its status, and one without links or events: shared, never changed. */
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });
const NONE: never[] = Object.freeze([]) as unknown as never[];
const NO_ATTRIBUTES: Attributes = Object.freeze({});

/**
 * A finished span as the exporter takes it (the SDK's ReadableSpan), made once its times are
 * known: the request's, its queue's, the batch's, a worker's stage. No SDK span lives behind it:
 * its fields are what the OTLP serializer reads, its constants shared by every span.
 */
class FinishedSpan implements ReadableSpan {
  readonly name: string;
  readonly kind: SpanKind;
  readonly parentSpanContext: SpanContext | undefined;
  readonly startTime: HrTime;
  readonly endTime: HrTime;
  readonly status: SpanStatus;
  readonly attributes: Attributes;
  readonly links: Link[];
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  readonly events = NONE;
  readonly ended = true;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  private readonly context: SpanContext;

  /** `start` and `end` in milliseconds since the epoch. */
  constructor(
    name: string,
    context: SpanContext,
    parent: SpanContext | undefined,
    kind: SpanKind,
    start: number,
    end: number,
    attributes: Attributes,
    links: Link[],
    resource: Resource,
    error: string | undefined,
  ) {
    this.name = name;
    this.context = context;
    this.parentSpanContext = parent;
    this.kind = kind;
    this.startTime = millisToHrTime(start);
    this.endTime = millisToHrTime(Math.max(start, end));
    this.status = error === undefined ? UNSET : { code: SpanStatusCode.ERROR, message: error };
    this.attributes = attributes;
    this.links = links;
    this.resource = resource;
    this.instrumentationScope = SCOPE;
  }

  spanContext(): SpanContext {
    return this.context;
  }

  get duration(): HrTime {
    return hrTimeDuration(this.startTime, this.endTime);
  }
}

/** A child of `parent` with its own span id; it carries its parent's tracestate, as the SDK's children do. */
function childContext(parent: SpanContext, spanId: string): SpanContext {
  const { traceId, traceFlags, traceState } = parent;
  return traceState ? { traceId, spanId, traceFlags, traceState } : { traceId, spanId, traceFlags };
}

/**
 * One prediction's spans: the server's, from its request's arrival to its answer, and, once its
 * batch leaves (or it is answered first), its wait in the queue. The sampler decides when it
 * starts, as the SDK's tracer would (the client's traceparent its parent). A sampled one keeps
 * its times and, once answered, waits with others to be made into spans (Tracing.finished).
 */
export class RequestTrace {
  /** The server span's context: the response header's, and its children's parent. */
  readonly context: SpanContext;
  /** The response header's value: traceHeaderOf the server span. */
  readonly header: string;
  readonly sampled: boolean;
  private readonly tracing: Tracing;
  private readonly model: TracedModel;
  private readonly requestId: string;
  private readonly parent: SpanContext | undefined;
  /** performance.now() times: arrived, enqueued, left the queue, answered. */
  private readonly arrivedAt: number;
  private readonly enqueuedAt: number;
  private dequeuedAt: number | undefined;
  private endedAt = 0;
  private status = 0;
  private message: string | undefined;
  /** The batches it ran in (one, or more after a worker died). */
  private batches: SpanContext[] = NONE;

  constructor(tracing: Tracing, model: TracedModel, requestId: string, context: SpanContext, parent: SpanContext | undefined, arrivedAt: number) {
    this.tracing = tracing;
    this.model = model;
    this.requestId = requestId;
    this.context = context;
    this.parent = parent;
    this.arrivedAt = arrivedAt;
    this.enqueuedAt = performance.now();
    this.sampled = (context.traceFlags & TraceFlags.SAMPLED) !== 0;
    this.header = traceHeaderOf(context);
  }

  get traceId(): string {
    return this.context.traceId;
  }

  /** Its batch left for a worker, or it was answered while queued (performance.now() time); the first time counts. */
  leftQueue(at = performance.now()): void {
    this.dequeuedAt ??= at;
  }

  /** It ran in the batch of this span: its span links to it. */
  ranIn(batch: SpanContext): void {
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

  /** Its queue's span and its own. */
  spans(resource: Resource, spanId: () => string): FinishedSpan[] {
    const { name, version } = this.model;
    const queue = new FinishedSpan(
      `queue ${name}`,
      childContext(this.context, spanId()),
      this.context,
      SpanKind.INTERNAL,
      epochOf(this.enqueuedAt),
      epochOf(this.dequeuedAt ?? this.endedAt),
      NO_ATTRIBUTES,
      NONE,
      resource,
      undefined,
    );
    const attributes = { [ATTR_MODEL]: name, [ATTR_VERSION]: version, [ATTR_REQUEST_ID]: this.requestId, [ATTR_STATUS]: this.status };
    const links = this.batches === NONE ? NONE : this.batches.map((context) => ({ context }));
    const error = this.status >= 500 ? (this.message ?? '') : undefined;
    // Its start's clock (epochOf), not Date.now(): whole milliseconds of another clock would end
    // it before its children, or before it started.
    const own = new FinishedSpan(
      `prediction ${name}`,
      this.context,
      this.parent,
      SpanKind.SERVER,
      epochOf(this.arrivedAt),
      epochOf(this.endedAt),
      attributes,
      links,
      resource,
      error,
    );
    return [queue, own];
  }
}

/**
 * A batch's span, from its leaving for a worker to the worker's answer, and what the worker's
 * stages need to be its children. A child of a sampled request, it is sampled with it (each of
 * the six samplers decides a child of a sampled span so); once ended it waits with others to be
 * made into spans (Tracing.finished).
 */
export class BatchTrace {
  readonly wire: WireTraceContext;
  readonly context: SpanContext;
  private readonly tracing: Tracing;
  private readonly model: TracedModel;
  private readonly workerId: string;
  private readonly requests: readonly RequestTrace[];
  private readonly size: number;
  /** performance.now() times. */
  private readonly startedAt: number;
  private endedAt = 0;
  private stages: readonly WireStage[] = NONE;
  private error: string | undefined;

  constructor(tracing: Tracing, model: TracedModel, workerId: string, sampled: readonly RequestTrace[], size: number, at: number) {
    this.tracing = tracing;
    this.model = model;
    this.workerId = workerId;
    this.requests = sampled;
    this.size = size;
    this.startedAt = at;
    this.context = childContext(sampled[0]!.context, tracing.spanId());
    this.wire = { traceId: this.context.traceId, spanId: this.context.spanId };
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

  /** The worker's stages' spans and its own. */
  spans(resource: Resource): FinishedSpan[] {
    const spans: FinishedSpan[] = [];
    const { stages, error } = this;
    for (const [i, s] of stages.entries()) {
      if (!s.spanId) continue;
      const failed = error !== undefined && i === stages.length - 1;
      spans.push(
        new FinishedSpan(
          s.name,
          childContext(this.context, s.spanId),
          this.context,
          SpanKind.INTERNAL,
          s.start,
          s.end,
          NO_ATTRIBUTES,
          NONE,
          resource,
          failed ? error : undefined,
        ),
      );
    }
    const attributes = { [ATTR_MODEL]: this.model.name, [ATTR_BATCH_SIZE]: this.size, [ATTR_WORKER]: this.workerId };
    const links = this.requests.map((r) => ({ context: r.context }));
    const parent = this.requests[0]!.context;
    spans.push(
      new FinishedSpan(
        `batch ${this.model.name}`,
        this.context,
        parent,
        SpanKind.INTERNAL,
        epochOf(this.startedAt),
        epochOf(this.endedAt),
        attributes,
        links,
        resource,
        error,
      ),
    );
    return spans;
  }
}

/** A performance.now() time as milliseconds since the epoch, which spans' start and end take. */
function epochOf(at: number): number {
  return performance.timeOrigin + at;
}

export class Tracing {
  /** The response header of a traced prediction; '' for none. */
  readonly header: string;
  private readonly processor: SpanProcessor;
  private readonly sampler: Sampler;
  private readonly propagator = new W3CTraceContextPropagator();
  private readonly resource: Resource;
  private readonly ids = new RandomIdGenerator();
  /** Predictions and batches ended whose spans are not yet made (finished). */
  private pending: Array<RequestTrace | BatchTrace> = [];
  private drainTimer: NodeJS.Timeout | undefined;
  private readonly drainMs: number;
  /** Spans finished, and spans the collector took: the difference at stop is what was dropped. */
  private ended = 0;
  private exported = 0;

  constructor(config: TracingConfig, exporter: SpanExporter, sampler: Sampler, env: NodeJS.ProcessEnv = process.env) {
    this.header = config.otelTraceHeader;
    this.sampler = sampler;
    const scheduledDelayMillis = numberOr(env.OTEL_BSP_SCHEDULE_DELAY, 5000);
    this.drainMs = Math.min(DRAIN_MS, scheduledDelayMillis);
    this.processor = new BatchSpanProcessor({
      exporter: this.counted(exporter),
      scheduledDelayMillis,
      exportTimeoutMillis: numberOr(env.OTEL_BSP_EXPORT_TIMEOUT, 30_000),
      maxQueueSize: numberOr(env.OTEL_BSP_MAX_QUEUE_SIZE, MAX_QUEUE_SIZE),
      maxExportBatchSize: numberOr(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, MAX_EXPORT_BATCH_SIZE),
    });
    this.resource = defaultResource()
      .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'tsserve', [ATTR_SERVICE_VERSION]: VERSION }))
      .merge(detectResources({ detectors: [envDetector] }));
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
    return new Tracing(config, new OTLPTraceExporter(), sampler, env);
  }

  /**
   * A prediction's job is made (its request arrived at `arrivedAt`): its server span continues
   * the client's trace, sampled as the sampler decides, as the SDK's tracer starts a span.
   */
  startRequest(model: TracedModel, requestId: string, headers: Readonly<Record<string, string>>, arrivedAt: number): RequestTrace {
    const context = headers.traceparent === undefined ? ROOT_CONTEXT : this.propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    const remote = trace.getSpanContext(context);
    const parent = remote && isSpanContextValid(remote) ? remote : undefined;
    const traceId = parent?.traceId ?? this.ids.generateTraceId();
    const sampling = this.sampler.shouldSample(context, traceId, `prediction ${model.name}`, SpanKind.SERVER, {}, NONE);
    const traceState = sampling.traceState ?? parent?.traceState;
    const traceFlags = sampling.decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE;
    const spanId = this.ids.generateSpanId();
    const own = traceState ? { traceId, spanId, traceFlags, traceState } : { traceId, spanId, traceFlags };
    return new RequestTrace(this, model, requestId, own, parent, arrivedAt);
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
    const batch = new BatchTrace(this, model, workerId, sampled, traces.length, at);
    for (const t of sampled) t.ranIn(batch.context);
    return batch;
  }

  /** A new span id, as the SDK makes them. */
  spanId(): string {
    return this.ids.generateSpanId();
  }

  /**
   * A sampled prediction was answered, or a traced batch ended: its spans are made, and given
   * to the batch processor, with others', DRAIN_AT at a time or DRAIN_MS later. Made together
   * rather than one by one amid a request's other work, they cost a prediction less CPU.
   */
  finished(trace: RequestTrace | BatchTrace): void {
    this.pending.push(trace);
    if (this.pending.length >= DRAIN_AT) this.drain();
    else if (this.drainTimer === undefined) this.drainTimer = setTimeout(() => this.drain(), this.drainMs).unref();
  }

  private drain(): void {
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    const pending = this.pending;
    this.pending = [];
    const spanId = () => this.spanId();
    for (const trace of pending) {
      const spans = trace instanceof RequestTrace ? trace.spans(this.resource, spanId) : trace.spans(this.resource);
      this.ended += spans.length;
      for (const span of spans) this.processor.onEnd(span);
    }
  }

  /** `exporter`, counting the spans the collector took. */
  private counted(exporter: SpanExporter): SpanExporter {
    return {
      export: (spans, done) =>
        exporter.export(spans, (result) => {
          if (result.code === ExportResultCode.SUCCESS) this.exported += spans.length;
          done(result);
        }),
      shutdown: () => exporter.shutdown(),
      ...(exporter.forceFlush && { forceFlush: () => exporter.forceFlush!() }),
    };
  }

  /**
   * Exports what is buffered and stops: the server's stop. Waits STOP_FLUSH_MS at most, then
   * says in one line how many spans never reached the collector.
   */
  async shutdown(warn: (message: string) => void): Promise<void> {
    this.drain();
    const flushed = this.processor.shutdown().then(
      () => true,
      () => true,
    );
    const inTime = await Promise.race([flushed, delay(STOP_FLUSH_MS, false, { ref: false })]);
    const dropped = this.ended - this.exported;
    if (dropped > 0) {
      const why = inTime ? 'the collector refused them or was down' : `the collector did not take them within ${STOP_FLUSH_MS} ms of the stop`;
      warn(`OpenTelemetry: ${dropped} of ${this.ended} spans dropped, not exported: ${why}`);
    }
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

function numberOr(text: string | undefined, fallback: number): number {
  const n = Number(text);
  return text !== undefined && Number.isFinite(n) && n >= 0 ? n : fallback;
}

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
 * The request's span is the SDK's (its sampler decides, from the client's traceparent). The
 * others are measured: a queue's wait, a batch, a stage are intervals whose ends the front end
 * learns, and each is exported once finished, with an id of the SDK's generator, as a child of
 * a sampled span: a third less CPU per prediction than SDK spans (bench/tracing.mjs).
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
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Attributes,
  type Link,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import { setTimeout as delay } from 'node:timers/promises';
import { ExportResultCode, millisToHrTime, hrTimeDuration, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, envDetector, detectResources, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  RandomIdGenerator,
  TraceIdRatioBasedSampler,
  TracerProvider,
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

/**
 * A span measured rather than lived: a queue's wait, a worker's stage. Its times are known when it
 * is exported, so it goes to the exporter as a finished span with no SDK span behind it.
 */
interface MeasuredSpan {
  readonly name: string;
  readonly parent: SpanContext;
  /** 16 hex digits. */
  readonly spanId: string;
  /** Milliseconds since the epoch. */
  readonly start: number;
  readonly end: number;
  /** The span failed with this. */
  readonly error?: string;
  readonly attributes?: Attributes;
  readonly links?: Link[];
}

/** One prediction's spans: the server's and, once its batch leaves (or it is answered first), its wait in the queue. */
export class RequestTrace {
  readonly span: Span;
  /** The response header's value: traceHeaderOf the server span. */
  readonly header: string;
  private readonly tracing: Tracing;
  private readonly model: string;
  /** When it was enqueued, on performance.now()'s clock; undefined once its wait is recorded. */
  private enqueuedAt: number | undefined;

  constructor(tracing: Tracing, span: Span, model: string, enqueuedAt: number) {
    this.tracing = tracing;
    this.span = span;
    this.model = model;
    this.enqueuedAt = enqueuedAt;
    this.header = traceHeaderOf(span.spanContext());
  }

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  get sampled(): boolean {
    return this.span.isRecording();
  }

  /** Its batch left for a worker, or it was answered while queued (performance.now() time). */
  leftQueue(at = performance.now()): void {
    if (this.enqueuedAt === undefined) return;
    if (this.sampled) this.tracing.measured(this.measuredQueue(this.enqueuedAt, at));
    this.enqueuedAt = undefined;
  }

  private measuredQueue(from: number, to: number): MeasuredSpan {
    return { name: `queue ${this.model}`, parent: this.span.spanContext(), spanId: this.tracing.spanId(), start: epochOf(from), end: epochOf(to) };
  }

  /** Answered with `status`; an error's message becomes the span's status. */
  end(status: number, message?: string): void {
    const at = performance.now();
    this.leftQueue(at);
    this.span.setAttribute(ATTR_STATUS, status);
    if (status >= 500) this.span.setStatus({ code: SpanStatusCode.ERROR, message });
    // Its start's clock (epochOf), not the SDK's default of Date.now(): whole milliseconds of
    // another clock would end it before its children, or before it started ("Inconsistent start
    // and end time", a 0 ms span).
    this.span.end(epochOf(at));
  }
}

/**
 * A batch's span, from its leaving for a worker to the worker's answer, and what the worker's
 * stages need to be its children. A child of a sampled request, it is sampled with it (each of
 * the six samplers decides a child of a sampled span so), and measured: exported when it ends.
 */
export class BatchTrace {
  readonly wire: WireTraceContext;
  private readonly tracing: Tracing;
  private readonly span: Omit<MeasuredSpan, 'end' | 'error'>;
  private endedFlag = false;

  constructor(tracing: Tracing, span: Omit<MeasuredSpan, 'end' | 'error'>) {
    this.tracing = tracing;
    this.span = span;
    this.wire = { traceId: span.parent.traceId, spanId: span.spanId };
  }

  get context(): SpanContext {
    const traceState = this.span.parent.traceState;
    return { traceId: this.wire.traceId, spanId: this.wire.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: false, ...(traceState && { traceState }) };
  }

  get ended(): boolean {
    return this.endedFlag;
  }

  /** The worker answered (or failed: `error`); its stages become the batch span's children. Once. */
  end(stages: readonly WireStage[], error?: string): void {
    if (this.endedFlag) return;
    this.endedFlag = true;
    const parent = this.context;
    for (const [i, s] of stages.entries()) {
      if (!s.spanId) continue;
      const failed = error !== undefined && i === stages.length - 1;
      this.tracing.measured({ name: s.name, parent, spanId: s.spanId, start: s.start, end: s.end, ...(failed && { error }) });
    }
    this.tracing.measured({ ...this.span, end: epochOf(performance.now()), ...(error !== undefined && { error }) });
  }
}

/** A performance.now() time as milliseconds since the epoch, which spans' start and end take. */
function epochOf(at: number): number {
  return performance.timeOrigin + at;
}

export class Tracing {
  /** The response header of a traced prediction; '' for none. */
  readonly header: string;
  private readonly provider: TracerProvider;
  private readonly processor: SpanProcessor;
  private readonly tracer: Tracer;
  private readonly propagator = new W3CTraceContextPropagator();
  private readonly resource: Resource;
  private readonly ids = new RandomIdGenerator();
  /** Spans finished, and spans the collector took: the difference at stop is what was dropped. */
  private ended = 0;
  private exported = 0;

  constructor(config: TracingConfig, exporter: SpanExporter, sampler: Sampler, env: NodeJS.ProcessEnv = process.env) {
    this.header = config.otelTraceHeader;
    const batches = new BatchSpanProcessor({
      exporter: this.counted(exporter),
      scheduledDelayMillis: numberOr(env.OTEL_BSP_SCHEDULE_DELAY, 5000),
      exportTimeoutMillis: numberOr(env.OTEL_BSP_EXPORT_TIMEOUT, 30_000),
    });
    this.processor = {
      onStart: (span, context) => batches.onStart(span, context),
      onEnd: (span) => {
        this.ended++;
        batches.onEnd(span);
      },
      forceFlush: () => batches.forceFlush(),
      shutdown: () => batches.shutdown(),
    };
    this.resource = defaultResource()
      .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'tsserve', [ATTR_SERVICE_VERSION]: VERSION }))
      .merge(detectResources({ detectors: [envDetector] }));
    this.provider = new TracerProvider({ sampler, resource: this.resource, spanProcessors: [this.processor] });
    this.tracer = this.provider.getTracer(SCOPE.name, SCOPE.version);
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

  /** A prediction's job is made (its request arrived at `arrivedAt`): the server span, continuing the client's trace. */
  startRequest(model: TracedModel, requestId: string, headers: Readonly<Record<string, string>>, arrivedAt: number): RequestTrace {
    const parent = headers.traceparent === undefined ? ROOT_CONTEXT : this.propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    const attributes = { [ATTR_MODEL]: model.name, [ATTR_VERSION]: model.version, [ATTR_REQUEST_ID]: requestId };
    const span = this.tracer.startSpan(`prediction ${model.name}`, { kind: SpanKind.SERVER, attributes, startTime: epochOf(arrivedAt) }, parent);
    return new RequestTrace(this, span, model.name, performance.now());
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
    const batch = new BatchTrace(this, {
      name: `batch ${model.name}`,
      parent: first.span.spanContext(),
      spanId: this.spanId(),
      start: epochOf(at),
      attributes: { [ATTR_MODEL]: model.name, [ATTR_BATCH_SIZE]: traces.length, [ATTR_WORKER]: workerId },
      links: sampled.map((t) => ({ context: t.span.spanContext() })),
    });
    const link = { context: batch.context };
    for (const t of sampled) t.span.addLink(link);
    return batch;
  }

  /** A new span id, as the SDK makes them. */
  spanId(): string {
    return this.ids.generateSpanId();
  }

  /** Exports a measured span as the SDK's own finished spans are exported. */
  measured(m: MeasuredSpan): void {
    const startTime = millisToHrTime(m.start);
    const endTime = millisToHrTime(Math.max(m.start, m.end));
    // A child carries its parent's tracestate, as the SDK's own children do.
    const { traceId, traceFlags, traceState } = m.parent;
    const context: SpanContext = { traceId, spanId: m.spanId, traceFlags, isRemote: false, ...(traceState && { traceState }) };
    const span: ReadableSpan = {
      name: m.name,
      kind: SpanKind.INTERNAL,
      spanContext: () => context,
      parentSpanContext: m.parent,
      startTime,
      endTime,
      duration: hrTimeDuration(startTime, endTime),
      status: m.error === undefined ? { code: SpanStatusCode.UNSET } : { code: SpanStatusCode.ERROR, message: m.error },
      attributes: m.attributes ?? {},
      links: m.links ?? [],
      events: [],
      ended: true,
      resource: this.resource,
      instrumentationScope: SCOPE,
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    };
    this.processor.onEnd(span);
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
    const flushed = this.provider.shutdown().then(
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

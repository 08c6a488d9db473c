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
  trace,
  type Link,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import { millisToHrTime, hrTimeDuration, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, envDetector, detectResources, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
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

/** The model a span is about. */
export interface TracedModel {
  readonly name: string;
  readonly version: string;
}

/** Whether the OTEL_* variables and otel_traces turn tracing on. */
export function tracingWanted(config: TracingConfig, env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter(Boolean);
  if (exporters.includes('none')) return false;
  return config.otelTraces || exporters.includes('otlp');
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

/** One prediction's spans: the server's and, until its batch leaves, its wait in the queue. */
export class RequestTrace {
  readonly span: Span;
  private readonly queue: Span;
  /** The queue span is still open. */
  private queued = true;
  /** The response header's value: traceHeaderOf the server span. */
  readonly header: string;

  constructor(span: Span, queue: Span) {
    this.span = span;
    this.queue = queue;
    this.header = traceHeaderOf(span.spanContext());
  }

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  get sampled(): boolean {
    return this.span.isRecording();
  }

  /** Its batch left for a worker (performance.now() time). */
  leftQueue(at?: number): void {
    // Ended once: a second end() costs the SDK a warning's work.
    if (this.queued) this.queue.end(at === undefined ? undefined : epochOf(at));
    this.queued = false;
  }

  /** Answered with `status`; an error's message becomes the span's status. */
  end(status: number, message?: string): void {
    this.leftQueue();
    this.span.setAttribute(ATTR_STATUS, status);
    if (status >= 500) this.span.setStatus({ code: SpanStatusCode.ERROR, message });
    this.span.end();
  }
}

/** A batch's span, and what the worker's stages need to be its children. */
export class BatchTrace {
  readonly span: Span;
  readonly wire: WireTraceContext;
  private readonly exportStage: (span: ReadableSpan) => void;

  constructor(span: Span, exportStage: (span: ReadableSpan) => void) {
    this.span = span;
    const { traceId, spanId } = span.spanContext();
    this.wire = { traceId, spanId };
    this.exportStage = exportStage;
  }

  /** The worker answered (or failed: `error`); its stages become the batch span's children. */
  end(stages: readonly WireStage[], error?: string): void {
    const parent = this.span as unknown as Partial<ReadableSpan>;
    for (const [i, s] of stages.entries()) {
      if (!s.spanId || !parent.resource || !parent.instrumentationScope) continue;
      const failed = error !== undefined && i === stages.length - 1;
      this.exportStage(stageSpan(s, this.span.spanContext(), parent as ReadableSpan, failed ? error : undefined));
    }
    if (error !== undefined) this.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    this.span.end();
  }
}

/** A worker's stage as the exporter reads a span: ids the worker gave, times it measured. */
function stageSpan(s: WireStage, parent: SpanContext, batch: ReadableSpan, error: string | undefined): ReadableSpan {
  const startTime = millisToHrTime(s.start);
  const endTime = millisToHrTime(Math.max(s.start, s.end));
  const context: SpanContext = { traceId: parent.traceId, spanId: s.spanId!, traceFlags: parent.traceFlags, isRemote: false };
  return {
    name: s.name,
    kind: SpanKind.INTERNAL,
    spanContext: () => context,
    parentSpanContext: parent,
    startTime,
    endTime,
    duration: hrTimeDuration(startTime, endTime),
    status: error === undefined ? { code: SpanStatusCode.UNSET } : { code: SpanStatusCode.ERROR, message: error },
    attributes: {},
    links: [],
    events: [],
    ended: true,
    resource: batch.resource,
    instrumentationScope: batch.instrumentationScope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
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

  constructor(config: TracingConfig, exporter: SpanExporter, sampler: Sampler, env: NodeJS.ProcessEnv = process.env) {
    this.header = config.otelTraceHeader;
    this.processor = new BatchSpanProcessor({ exporter, scheduledDelayMillis: numberOr(env.OTEL_BSP_SCHEDULE_DELAY, 5000) });
    const resource = defaultResource()
      .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'tsserve', [ATTR_SERVICE_VERSION]: VERSION }))
      .merge(detectResources({ detectors: [envDetector] }));
    this.provider = new TracerProvider({ sampler, resource, spanProcessors: [this.processor] });
    this.tracer = this.provider.getTracer('tsserve', VERSION);
  }

  /**
   * Tracing as the config and the OTEL_* variables want it; undefined when off. The log says
   * where spans go, and warns of what OpenTelemetry reports (an export that failed: the collector
   * down), each message once.
   */
  static fromConfig(config: TracingConfig, log: TracingLog, env: NodeJS.ProcessEnv = process.env): Tracing | undefined {
    if (!tracingWanted(config, env)) return undefined;
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
    const queue = this.tracer.startSpan(`queue ${model.name}`, { kind: SpanKind.INTERNAL }, trace.setSpan(ROOT_CONTEXT, span));
    return new RequestTrace(span, queue);
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
    const links: Link[] = sampled.map((t) => ({ context: t.span.spanContext() }));
    const span = this.tracer.startSpan(
      `batch ${model.name}`,
      {
        kind: SpanKind.INTERNAL,
        links,
        startTime: epochOf(at),
        attributes: { [ATTR_MODEL]: model.name, [ATTR_BATCH_SIZE]: traces.length, [ATTR_WORKER]: workerId },
      },
      trace.setSpan(ROOT_CONTEXT, first.span),
    );
    for (const t of sampled) t.span.addLink({ context: span.spanContext() });
    return new BatchTrace(span, (s) => this.processor.onEnd(s));
  }

  /** Exports what is buffered and stops: the server's stop. */
  async shutdown(): Promise<void> {
    await this.provider.shutdown();
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

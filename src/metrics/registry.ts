/**
 * @module metrics/registry
 * The metrics TorchServe users scrape, kept in a prom-client registry and written in TorchServe's
 * Prometheus text (Java simpleclient 0.9): names kept as configured (no `_total` added), every label
 * set ending in a comma, values as Java doubles (`3.0`). `metrics_mode=log` serves an empty body
 * and writes each update as a line of ts_metrics.log (the server's metrics) or model_metrics.log
 * (the handlers'); `legacy` serves the three ts_* counters and logs the rest; `prometheus` serves
 * everything. Which families exist is metrics.yaml's choice (metrics/definitions.ts), plus
 * tsserve's own per-model ones.
 */
import { hostname } from 'node:os';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricsMode } from '../config/server-config.js';
import type { WireMetric, WireStage } from '../protocol/messages.js';
import { DEFAULT_METRICS, type MetricDefinition, type MetricDefinitions } from './definitions.js';
import type { SystemSample } from './system.js';
import { LatencyHistogram } from './latency.js';
import type { Tracing } from './tracing.js';

const LEGACY = ['ts_inference_requests_total', 'ts_inference_latency_microseconds', 'ts_queue_latency_microseconds'];
const MODEL_LABELS = ['model_name', 'model_version', 'hostname'];
/** The Java client's default histogram buckets, which TorchServe's declared histograms use. */
const JAVA_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
/** ts_batch_size's: batch sizes are counts up to a few hundred. */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/** ts_model_load_seconds': a small model loads in a few tenths of a second, a large one in tens of seconds. */
const LOAD_BUCKETS = [0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30, 60];
/** ts_worker_start_milliseconds': a worker's start, from a fraction of a second to its startup timeout. */
const START_BUCKETS = [100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 120_000];

/**
 * The per-model latency histograms' (ts_request_seconds, ts_queue_wait_seconds and the worker's
 * stages): from mnist's sub-millisecond inference to a large model's seconds (docs/metrics.md).
 */
export const SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** The worker's stages, each a histogram of its own. */
const STAGE_HISTOGRAMS = { preprocess: 'ts_preprocess_seconds', inference: 'ts_inference_seconds', postprocess: 'ts_postprocess_seconds' } as const;

/** Where log-mode lines go: the server's metrics to ts_metrics.log, the handlers' to model_metrics.log. */
export type MetricLineWriter = (file: 'ts' | 'model', line: string) => void;

export interface MetricsOptions {
  /** What metrics.yaml declares; TorchServe's default file without one. */
  readonly definitions?: MetricDefinitions;
  /** `model_metrics_auto_detect`: record a handler's undeclared metric instead of dropping it. */
  readonly autoDetect?: boolean;
  readonly lines?: MetricLineWriter;
  /** Told once per reason a handler's metric is dropped. */
  readonly warn?: (message: string) => void;
  /** OpenTelemetry traces, when on (metrics/tracing.ts). */
  readonly tracing?: Tracing;
}

/** One series of a family, its labels bound once (Family.bound). */
export interface BoundSeries {
  add(value: number): void;
}

/**
 * A counter's series whose additions are summed here and handed to prom-client when the family is
 * read: an addition then builds no labels object and hashes no labels, which for the three counts
 * of each refusal past capacity was a quarter of what tsserve's refusal did beyond a bare
 * node:http server's (bench/refusal-cost.mjs).
 */
class PendingSeries implements BoundSeries {
  value = 0;
  readonly labels: Record<string, string>;

  constructor(labels: Record<string, string>) {
    this.labels = labels;
  }

  add(value: number): void {
    this.value += value;
  }
}

/**
 * One metric family: each update goes to prom-client and, when the mode does not serve this
 * family, to its log file as TorchServe's line
 * `<Name>.<Unit>:<value>|#<dimensions but the last>|#hostname:<host>,[requestID:<ids>,]timestamp:<s>`.
 * Dimension values come in the order of the label names, as TorchServe's frontend passes them.
 */
class Family {
  /** inc, set or observe, chosen once for the family's kind. */
  private readonly record: (labels: Record<string, string>, value: number) => void;
  private readonly name: string;
  readonly labelNames: readonly string[];
  private readonly unit: string;
  private readonly write: ((line: string) => void) | undefined;
  /** A served counter's series can gather additions until it is read; any other updates at once. */
  private readonly gathers: boolean;
  private readonly bounds = new Map<string, BoundSeries>();
  private readonly pending: PendingSeries[] = [];

  constructor(name: string, labelNames: readonly string[], metric: Counter | Gauge | Histogram, unit: string, write: ((line: string) => void) | undefined) {
    this.name = name;
    this.labelNames = labelNames;
    this.unit = unit;
    this.write = write;
    this.gathers = metric instanceof Counter && !write;
    if (metric instanceof Counter) this.record = (labels, value) => metric.inc(labels, value);
    else if (metric instanceof Gauge) this.record = (labels, value) => metric.set(labels, value);
    else this.record = (labels, value) => metric.observe(labels, value);
  }

  update(values: readonly string[], value: number, requestIds?: readonly string[]): void {
    const labels = this.labels(values);
    this.record(labels, value);
    if (this.write) this.write(logLine(this.name, this.unit, value, labels, requestIds));
  }

  /** The series of `values`, for a caller that updates it again and again: made once per label set. */
  bound(values: readonly string[]): BoundSeries {
    const key = values.join('\u0000');
    let series = this.bounds.get(key);
    if (!series) {
      if (this.gathers) {
        const pending = new PendingSeries(this.labels(values));
        this.pending.push(pending);
        series = pending;
      } else {
        series = { add: (value) => this.update(values, value) };
      }
      this.bounds.set(key, series);
    }
    return series;
  }

  /** Hands prom-client what the bound series gathered: called whenever the family is read. */
  flush(): void {
    for (const series of this.pending) {
      if (series.value === 0) continue;
      this.record(series.labels, series.value);
      series.value = 0;
    }
  }

  private labels(values: readonly string[]): Record<string, string> {
    const labels: Record<string, string> = {};
    for (const [i, label] of this.labelNames.entries()) labels[label] = values[i]!;
    return labels;
  }
}

/** A prediction as its batch leaves (batching/job.ts's Job), on performance.now()'s clock. */
export interface QueuedPrediction {
  readonly arrivedAt: number;
  readonly dequeuedAt: number | undefined;
  /** The server's own: not counted. */
  readonly quiet: boolean;
  /**
   * Its wait is counted (ts_queue_wait_seconds): one given to a second worker after its first
   * died waits again, and is counted once, up to the first batch it left in (as its queue span).
   */
  waitCounted: boolean;
}

/** A model version as the scraped per-model gauges read it: requests queued, workers with the model loaded. */
export interface WatchedModel {
  readonly name: string;
  readonly version: string;
  /** Requests queued, and the room left before it refuses. */
  readonly queue: { readonly size: number; readonly remainingCapacity: number };
  readonly pool: { loadedCount(): number };
  /** Has its workers; false once unloaded to make room (models/model-memory.ts). */
  readonly loaded: boolean;
}

/** A model's load ended, or it was unloaded to make room: models/model-memory.ts's events. */
export type ResidencyChange =
  | { readonly kind: 'loaded'; readonly model: WatchedModel; readonly reason: string; readonly seconds: number; readonly ok: boolean }
  | { readonly kind: 'unloaded'; readonly model: WatchedModel; readonly reason: string };

/** The changes of the registered models the per-model gauges follow: models/model-service.ts's events. */
export type ModelChange =
  | { readonly kind: 'registered'; readonly model: WatchedModel }
  | { readonly kind: 'unregistered'; readonly name: string; readonly version: string | undefined }
  | { readonly kind: 'scaled' | 'default-changed' };

export class MetricsRegistry {
  readonly host = hostname();
  private readonly registry = new Registry();
  private readonly mode: MetricsMode;
  private readonly options: MetricsOptions;
  /** The server's metrics that metrics.yaml declares, by name; the others are not recorded. */
  private readonly server = new Map<string, Family>();
  private readonly model = new Map<string, Family>();
  private readonly warned = new Set<string>();
  private readonly hostValues: readonly string[] = ['Host', this.host];
  private readonly refusals: Family;
  private readonly timeouts: Family;
  private readonly restarts: Family;
  private readonly batchSizes: Family;
  private readonly loads: Family;
  private readonly loadSeconds: Family;
  private readonly unloads: Family;
  private readonly scaleUps: Family;
  private readonly scaleDowns: Family;
  private readonly scaleLimited: Family;
  private readonly workerStarts: Family;
  private readonly requestSeconds: LatencyHistogram;
  private readonly queueWaits: LatencyHistogram;
  private readonly stageSeconds: Record<keyof typeof STAGE_HISTOGRAMS, LatencyHistogram>;
  /** OpenTelemetry traces; undefined when off. */
  readonly tracing: Tracing | undefined;
  /** Requests2XX, 4XX and 5XX's series, bound at their first response. */
  private readonly responses: Partial<Record<'2XX' | '4XX' | '5XX', BoundSeries>> = {};
  /** refusedEarly's series, by model version and the version asked for. */
  private readonly earlyRefusals = new WeakMap<object, Map<string, { readonly requests: BoundSeries | undefined; readonly refused: BoundSeries }>>();
  /** The registered model versions, by `name version`: what ts_queue_size and ts_workers_ready read. */
  private readonly watched = new Map<string, WatchedModel>();

  constructor(mode: MetricsMode, options: MetricsOptions = {}) {
    this.mode = mode;
    this.options = options;
    this.tracing = options.tracing;
    const definitions = options.definitions ?? DEFAULT_METRICS;
    for (const d of definitions.server) this.server.set(d.name, this.family(d, d.dimensions, 'ts'));
    // TorchServe appends the host to a model metric's declared dimensions.
    for (const d of definitions.model) this.model.set(d.name, this.family(d, [...d.dimensions, 'Hostname'], 'model'));
    // tsserve's own per-model health metrics: what a TorchServe user had to dig out of the logs.
    const own = (name: string, type: 'counter' | 'histogram', extra: readonly string[] = [], unit = 'Count', buckets = BATCH_BUCKETS): Family => {
      const dimensions = [...MODEL_LABELS, ...extra];
      return this.family({ name, type, unit, dimensions }, dimensions, 'ts', buckets);
    };
    this.refusals = own('ts_requests_rejected_total', 'counter');
    this.timeouts = own('ts_response_timeouts_total', 'counter');
    this.restarts = own('ts_worker_restarts_total', 'counter');
    this.batchSizes = own('ts_batch_size', 'histogram');
    // Loads and unloads of models within the memory budget, with why (register, request, scale;
    // memory_budget, max_loaded_models) and whether the load succeeded.
    const withReason = (name: string, type: 'counter' | 'histogram', extra: string[], unit = 'Count'): Family =>
      this.family({ name, type, unit, dimensions: [...MODEL_LABELS, ...extra] }, [...MODEL_LABELS, ...extra], 'ts', LOAD_BUCKETS);
    this.loads = withReason('ts_model_loads_total', 'counter', ['reason', 'outcome']);
    this.loadSeconds = withReason('ts_model_load_seconds', 'histogram', ['reason'], 'Seconds');
    this.unloads = withReason('ts_model_unloads_total', 'counter', ['reason']);
    // 0 while a registered model is unloaded (its next request loads it).
    this.scrapedGauge('ts_model_loaded', (m) => (m.loaded ? 1 : 0));
    // The scaler's decisions (workers/scaler.ts): why workers came and went, and what held them.
    this.scaleUps = own('ts_worker_scale_ups_total', 'counter', ['reason']);
    this.scaleDowns = own('ts_worker_scale_downs_total', 'counter', ['reason']);
    this.scaleLimited = own('ts_worker_scale_limited_total', 'counter', ['bound']);
    this.workerStarts = own('ts_worker_start_milliseconds', 'histogram', [], 'Milliseconds', START_BUCKETS);
    // Latency a p99 can be taken of: one series per model version, seconds (metrics/latency.ts).
    const seconds = (name: string): LatencyHistogram =>
      new LatencyHistogram(name, SECONDS_BUCKETS, (model, version) => formatLabels({ model_name: model, model_version: version, hostname: this.host }));
    this.requestSeconds = seconds('ts_request_seconds');
    this.queueWaits = seconds('ts_queue_wait_seconds');
    this.stageSeconds = {
      preprocess: seconds(STAGE_HISTOGRAMS.preprocess),
      inference: seconds(STAGE_HISTOGRAMS.inference),
      postprocess: seconds(STAGE_HISTOGRAMS.postprocess),
    };
    this.scrapedGauge('ts_queue_size', (m) => m.queue.size);
    // Room left before the queue refuses (job_queue_size less what it holds): the alert "queue
    // near full" compares it with ts_queue_size, whatever job_queue_size each model has.
    this.scrapedGauge('ts_queue_remaining_capacity', (m) => m.queue.remainingCapacity);
    // 0 while a model cannot keep a worker alive (or has none): the alert a crash loop deserves.
    this.scrapedGauge('ts_workers_ready', (m) => m.pool.loadedCount());
  }

  /** A per-model gauge read from the models at each scrape. */
  private scrapedGauge(name: string, value: (m: WatchedModel) => number): void {
    const watched = this.watched;
    const host = this.host;
    new Gauge({
      name,
      help: help('gauge', 'Count'),
      labelNames: MODEL_LABELS,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const m of watched.values()) this.set({ model_name: m.name, model_version: m.version, hostname: host }, value(m));
      },
    });
  }

  /** A family, logged when this mode does not serve it. */
  private family(d: MetricDefinition, labelNames: readonly string[], file: 'ts' | 'model', buckets = JAVA_BUCKETS): Family {
    let family: Family | undefined;
    // prom-client calls collect each time it reads the metric (a scrape, a test's get()).
    const opts = { name: d.name, help: help(d.type, d.unit), labelNames, registers: [this.registry], collect: () => family?.flush() };
    const metric = d.type === 'counter' ? new Counter(opts) : d.type === 'gauge' ? new Gauge(opts) : new Histogram({ ...opts, buckets });
    const served = this.mode === 'prometheus' || (this.mode === 'legacy' && LEGACY.includes(d.name));
    const lines = this.options.lines;
    family = new Family(d.name, labelNames, metric, d.unit, served || !lines ? undefined : (line) => lines(file, line));
    return family;
  }

  /** A server metric, if metrics.yaml declares it. */
  private recordServer(name: string, values: readonly string[], value: number): void {
    this.server.get(name)?.update(values, value);
  }

  /** Follows the registered models, for `ts_queue_size` and `ts_workers_ready` to read at each scrape. */
  followModels(change: ModelChange): void {
    if (change.kind === 'registered') this.watched.set(`${change.model.name} ${change.model.version}`, change.model);
    else if (change.kind === 'unregistered' && change.version !== undefined) this.watched.delete(`${change.name} ${change.version}`);
  }

  /** A model's load ended (ok or not), or it was unloaded to make room. */
  residency(change: ResidencyChange): void {
    const values = this.modelValues(change.model.name, change.model.version);
    if (change.kind === 'unloaded') {
      this.unloads.update([...values, change.reason], 1);
      return;
    }
    this.loads.update([...values, change.reason, change.ok ? 'ok' : 'failed'], 1);
    if (change.ok) this.loadSeconds.update([...values, change.reason], change.seconds);
  }

  /** A request refused with 503 because the queue was full or the model had no worker. */
  refused(model: string, version: string): void {
    this.refusals.update(this.modelValues(model, version), 1);
  }

  responseTimedOut(model: string, version: string): void {
    this.timeouts.update(this.modelValues(model, version), 1);
  }

  workerRestarted(model: string, version: string): void {
    this.restarts.update(this.modelValues(model, version), 1);
  }

  /** The scaler added (`up`) or stopped (`down`) `workers` workers, for `reason`. */
  scaled(model: string, version: string, direction: 'up' | 'down', reason: string, workers: number): void {
    if (workers > 0) (direction === 'up' ? this.scaleUps : this.scaleDowns).update([...this.modelValues(model, version), reason], workers);
  }

  /** A scale-up the bound (max_worker, cores, memory) held short. */
  scaleLimitedBy(model: string, version: string, bound: string): void {
    this.scaleLimited.update([...this.modelValues(model, version), bound], 1);
  }

  /** A worker of the model loaded, `ms` after it was made. */
  workerStarted(model: string, version: string, ms: number): void {
    this.workerStarts.update(this.modelValues(model, version), ms);
  }

  /** A batch of these predictions left for a worker: its size, and each one's wait in the queue. */
  batchFormed(model: string, version: string, jobs: readonly QueuedPrediction[]): void {
    this.batchSizes.update(this.modelValues(model, version), jobs.length);
    for (const job of jobs) {
      if (job.quiet || job.waitCounted || job.dequeuedAt === undefined) continue;
      job.waitCounted = true;
      this.queueWaits.observe(model, version, (job.dequeuedAt - job.arrivedAt) / 1000);
    }
  }

  /** A prediction of the model was answered (or failed) `seconds` after it arrived. */
  requestAnswered(model: string, version: string, seconds: number): void {
    this.requestSeconds.observe(model, version, seconds);
  }

  /** A worker ran a batch of `requests` predictions through these stages; each counts once per request it ran. */
  stagesRan(model: string, version: string, stages: readonly WireStage[], requests: number): void {
    for (const s of stages) this.stageSeconds[s.name].observe(model, version, Math.max(0, s.end - s.start) / 1000, s.requests ?? requests);
  }

  /** A prediction request that found its model; `version` is the URL's or `default`. */
  inferenceRequest(model: string, version: string): void {
    this.recordServer('ts_inference_requests_total', this.modelValues(model, version), 1);
  }

  inferenceDone(model: string, version: string, latencyUs: number): void {
    this.recordServer('ts_inference_latency_microseconds', this.modelValues(model, version), latencyUs);
  }

  dequeued(model: string, version: string, waitedUs: number): void {
    this.recordServer('ts_queue_latency_microseconds', this.modelValues(model, version), waitedUs);
    this.recordServer('QueueTime', this.hostValues, waitedUs / 1000);
  }

  response(status: number): void {
    const family = status >= 200 && status < 300 ? '2XX' : status >= 400 && status < 500 ? '4XX' : '5XX';
    this.responses[family] ??= this.server.get(`Requests${family}`)?.bound(this.hostValues);
    this.responses[family]?.add(1);
  }

  /**
   * A prediction for `model` refused before its body was read (batching/admission.ts's
   * earlyRefusal), `asked` the URL's version or `default`: counted as inferenceRequest and refused
   * count it, by series bound once per model version and version asked for.
   */
  refusedEarly(model: { readonly name: string; readonly version: string }, asked: string): void {
    let byAsked = this.earlyRefusals.get(model);
    if (!byAsked) this.earlyRefusals.set(model, (byAsked = new Map()));
    let counts = byAsked.get(asked);
    if (!counts) {
      counts = {
        requests: this.server.get('ts_inference_requests_total')?.bound(this.modelValues(model.name, asked)),
        refused: this.refusals.bound(this.modelValues(model.name, model.version)),
      };
      byAsked.set(asked, counts);
    }
    counts.requests?.add(1);
    counts.refused.add(1);
  }

  /** The system collector's gauges. */
  system(sample: SystemSample): void {
    for (const [name, value] of Object.entries(sample)) this.recordServer(name, this.hostValues, value);
  }

  workerLoaded(workerName: string, ms: number): void {
    this.recordServer('WorkerLoadTime', [workerName, ...this.hostValues], ms);
  }

  /** The server's own time on a batch: sending it to the worker and handing out its answers. */
  workerThreadTime(ms: number): void {
    this.recordServer('WorkerThreadTime', this.hostValues, ms);
  }

  /**
   * Metrics a handler emitted through context.metrics while answering `requestIds`: those
   * metrics.yaml declares, and with `model_metrics_auto_detect` any other, registered on first
   * sight with the dimensions it came with. The dimension values go in the order they came, as in
   * TorchServe; a metric with more or fewer than its family's labels is dropped.
   */
  handlerMetrics(metrics: readonly WireMetric[], requestIds: readonly string[]): void {
    for (const m of metrics) {
      const family = this.model.get(m.name) ?? this.autoDetected(m);
      if (!family) continue;
      const values = [...Object.values(m.dimensions), this.host];
      if (values.length !== family.labelNames.length) {
        this.warnOnce(
          `Dropping model metric ${m.name}: it came with dimensions ${Object.keys(m.dimensions).join(', ') || '(none)'}, metrics_config declares ${family.labelNames.slice(0, -1).join(', ') || '(none)'}`,
        );
        continue;
      }
      family.update(values, m.value, requestIds);
    }
  }

  private autoDetected(m: WireMetric): Family | undefined {
    if (!this.options.autoDetect) {
      this.warnOnce(
        `Dropping model metric ${m.name}: metrics_config does not declare it (declare it under model_metrics, or set model_metrics_auto_detect=true)`,
      );
      return undefined;
    }
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(m.name) || this.registry.getSingleMetric(m.name)) {
      this.warnOnce(`Dropping model metric ${m.name}: not a Prometheus metric name, or the name of a server metric`);
      return undefined;
    }
    const dimensions = Object.keys(m.dimensions);
    const family = this.family({ name: m.name, type: m.type, unit: m.unit, dimensions }, [...dimensions, 'Hostname'], 'model');
    this.model.set(m.name, family);
    return family;
  }

  private warnOnce(message: string): void {
    if (this.warned.has(message)) return;
    this.warned.add(message);
    this.options.warn?.(message);
  }

  /** The text of GET /metrics, filtered by `name[]` when names are given. */
  async render(names: readonly string[] = []): Promise<string> {
    if (this.mode === 'log') return '';
    const families = await this.registry.getMetricsAsJSON();
    const lines: string[] = [];
    for (const f of families) {
      if (this.mode === 'legacy' && !LEGACY.includes(f.name)) continue;
      if (names.length > 0 && !names.includes(f.name)) continue;
      lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      for (const v of f.values) lines.push(`${metricName(v) ?? f.name}{${formatLabels(v.labels)}} ${javaDouble(v.value)}`);
    }
    if (this.mode === 'prometheus') {
      for (const h of [this.requestSeconds, this.queueWaits, ...Object.values(this.stageSeconds)]) {
        if (names.length > 0 && !names.includes(h.name)) continue;
        lines.push(`# HELP ${h.name} ${help('histogram', 'Seconds')}`, `# TYPE ${h.name} histogram`, ...h.samples(javaDouble));
      }
    }
    return lines.length > 0 ? lines.join('\n') + '\n' : '';
  }

  private modelValues(model: string, version: string): readonly string[] {
    return [model, version, this.host];
  }
}

/** TorchServe's metric log line; the last dimension is the host, written as `hostname:`. */
function logLine(name: string, unit: string, value: number, labels: Record<string, string>, requestIds: readonly string[] = []): string {
  const values = Object.entries(labels);
  const host = values.pop()?.[1] ?? '';
  const dimensions = values.map(([k, v]) => `${k}:${v}`).join(',');
  const requests = requestIds.length > 0 ? `requestID:${requestIds.join(',')},` : '';
  return `${name}.${unit}:${javaDouble(value)}|#${dimensions}|#hostname:${host},${requests}timestamp:${Math.floor(Date.now() / 1000)}`;
}

/** A histogram's series are named `<name>_bucket`, `_sum` and `_count`. */
function metricName(value: object): string | undefined {
  return 'metricName' in value && typeof value.metricName === 'string' ? value.metricName : undefined;
}

function help(type: string, unit: string): string {
  return `Torchserve prometheus ${type} metric with unit: ${unit}`;
}

/** Label pairs, each with its trailing comma; a bucket's `le` last, as the Java client writes it. */
function formatLabels(labels: Record<string, string | number | undefined>): string {
  const { le, ...rest } = labels;
  return Object.entries(le === undefined ? rest : { ...rest, le })
    .map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}",`)
    .join('');
}

/** Java's Double.toString: `3.0`, `0.25`, `1.0E7`. */
export function javaDouble(v: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf';
  const abs = Math.abs(v);
  if (abs !== 0 && (abs >= 1e7 || abs < 1e-3)) {
    const [mantissa, exponent] = v.toExponential().split('e') as [string, string];
    return `${mantissa.includes('.') ? mantissa : `${mantissa}.0`}E${Number(exponent)}`;
  }
  return Number.isInteger(v) ? `${v}.0` : String(v);
}

/**
 * @module metrics/registry
 * The metrics TorchServe users scrape, kept in a prom-client registry and written in TorchServe's
 * Prometheus text (Java simpleclient 0.9): names kept as configured (no `_total` added), every label
 * set ending in a comma, values as Java doubles (`3.0`). `metrics_mode=log` serves an empty body
 * and writes each update as a line of ts_metrics.log (the server's metrics) or model_metrics.log
 * (the handlers'); `legacy` serves the three ts_* counters and logs the rest; `prometheus` serves
 * everything.
 */
import { hostname } from 'node:os';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricsMode } from '../config/server-config.js';
import type { WireMetric } from '../worker/protocol.js';
import { SYSTEM_UNITS, type SystemSample } from './system.js';

const LEGACY = ['ts_inference_requests_total', 'ts_inference_latency_microseconds', 'ts_queue_latency_microseconds'];
const MODEL_LABELS = ['model_name', 'model_version', 'hostname'] as const;
const HOST_LABELS = ['Level', 'Hostname'] as const;
/** Units TorchServe's default metrics.yaml gives the handler metrics it declares. */
const DECLARED_MODEL_UNITS: Record<string, string> = { HandlerTime: 'ms', PredictionTime: 'ms' };

type ModelLabel = (typeof MODEL_LABELS)[number];
type HostLabel = (typeof HOST_LABELS)[number];

/** Where log-mode lines go: the server's metrics to ts_metrics.log, the handlers' to model_metrics.log. */
export type MetricLineWriter = (file: 'ts' | 'model', line: string) => void;

/**
 * One metric family: each update goes to prom-client and, when the mode does not serve this
 * family, to its log file as TorchServe's line
 * `<Name>.<Unit>:<value>|#<dimensions but the last>|#hostname:<host>,[requestID:<ids>,]timestamp:<s>`.
 */
class Series<L extends string> {
  /** inc, set or observe, chosen once for the family's kind. */
  private readonly record: (labels: Record<L, string>, value: number) => void;

  constructor(
    private readonly name: string,
    metric: Counter<L> | Gauge<L> | Histogram<L>,
    private readonly unit: string,
    private readonly write: ((line: string) => void) | undefined,
  ) {
    if (metric instanceof Counter) this.record = (labels, value) => metric.inc(labels, value);
    else if (metric instanceof Gauge) this.record = (labels, value) => metric.set(labels, value);
    else this.record = (labels, value) => metric.observe(labels, value);
  }

  update(labels: Record<L, string>, value: number, requestIds?: readonly string[]): void {
    this.record(labels, value);
    if (this.write) this.write(logLine(this.name, this.unit, value, labels, requestIds));
  }
}

export class MetricsRegistry {
  readonly host = hostname();
  private readonly registry = new Registry();
  private readonly mode: MetricsMode;
  private readonly lines: MetricLineWriter | undefined;
  private readonly requests: Series<ModelLabel>;
  private readonly latency: Series<ModelLabel>;
  private readonly queueLatency: Series<ModelLabel>;
  private readonly responses: Record<'2XX' | '4XX' | '5XX', Series<HostLabel>>;
  private readonly queueTime: Series<HostLabel>;
  private readonly workerLoadTime: Series<'WorkerName' | HostLabel>;
  private readonly modelMetrics = new Map<string, Series<string>>();
  private readonly rejections: Series<ModelLabel>;
  private readonly timeouts: Series<ModelLabel>;
  private readonly restarts: Series<ModelLabel>;
  private readonly batchSizes: Series<ModelLabel>;
  private readonly systemGauges: Partial<Record<keyof SystemSample, Series<HostLabel>>> = {};
  private queueSizes: () => ReadonlyArray<{ model: string; version: string; size: number }> = () => [];

  constructor(mode: MetricsMode, lines?: MetricLineWriter) {
    this.mode = mode;
    this.lines = lines;
    this.requests = this.counter('ts_inference_requests_total', 'Count', MODEL_LABELS);
    this.latency = this.counter('ts_inference_latency_microseconds', 'Microseconds', MODEL_LABELS);
    this.queueLatency = this.counter('ts_queue_latency_microseconds', 'Microseconds', MODEL_LABELS);
    this.responses = {
      '2XX': this.counter('Requests2XX', 'Count', HOST_LABELS),
      '4XX': this.counter('Requests4XX', 'Count', HOST_LABELS),
      '5XX': this.counter('Requests5XX', 'Count', HOST_LABELS),
    };
    this.queueTime = this.gauge('QueueTime', 'Milliseconds', HOST_LABELS);
    this.workerLoadTime = this.gauge('WorkerLoadTime', 'Milliseconds', ['WorkerName', 'Level', 'Hostname'] as const);
    // tsserve's own per-model health metrics: what a TorchServe user had to dig out of the logs.
    this.rejections = this.counter('ts_requests_rejected_total', 'Count', MODEL_LABELS);
    this.timeouts = this.counter('ts_response_timeouts_total', 'Count', MODEL_LABELS);
    this.restarts = this.counter('ts_worker_restarts_total', 'Count', MODEL_LABELS);
    this.batchSizes = this.series('ts_batch_size', new Histogram({
      name: 'ts_batch_size',
      help: help('histogram', 'Count'),
      labelNames: MODEL_LABELS,
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers: [this.registry],
    }), 'Count', 'ts');
    const sizes = (): ReadonlyArray<{ model: string; version: string; size: number }> => this.queueSizes();
    const labels = (model: string, version: string): Record<ModelLabel, string> => this.modelLabels(model, version);
    new Gauge({
      name: 'ts_queue_size',
      help: help('gauge', 'Count'),
      labelNames: MODEL_LABELS,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const q of sizes()) this.set(labels(q.model, q.version), q.size);
      },
    });
  }

  private counter<L extends string>(name: string, unit: string, labelNames: readonly L[]): Series<L> {
    return this.series(name, new Counter({ name, help: help('counter', unit), labelNames, registers: [this.registry] }), unit, 'ts');
  }

  private gauge<L extends string>(name: string, unit: string, labelNames: readonly L[]): Series<L> {
    return this.series(name, new Gauge({ name, help: help('gauge', unit), labelNames, registers: [this.registry] }), unit, 'ts');
  }

  /** A family, logged when this mode does not serve it. */
  private series<L extends string>(name: string, metric: Counter<L> | Gauge<L> | Histogram<L>, unit: string, file: 'ts' | 'model'): Series<L> {
    const served = this.mode === 'prometheus' || (this.mode === 'legacy' && LEGACY.includes(name));
    const lines = this.lines;
    return new Series(name, metric, unit, served || !lines ? undefined : (line) => lines(file, line));
  }

  /** Where `ts_queue_size` reads the queues from, at each scrape. */
  watchQueues(source: () => ReadonlyArray<{ model: string; version: string; size: number }>): void {
    this.queueSizes = source;
  }

  /** A request refused with 503 because the queue was full or the model had no worker. */
  rejected(model: string, version: string): void {
    this.rejections.update(this.modelLabels(model, version), 1);
  }

  responseTimedOut(model: string, version: string): void {
    this.timeouts.update(this.modelLabels(model, version), 1);
  }

  workerRestarted(model: string, version: string): void {
    this.restarts.update(this.modelLabels(model, version), 1);
  }

  batchFormed(model: string, version: string, size: number): void {
    this.batchSizes.update(this.modelLabels(model, version), size);
  }

  /** A prediction request that found its model; `version` is the URL's or `default`. */
  inferenceRequest(model: string, version: string): void {
    this.requests.update(this.modelLabels(model, version), 1);
  }

  inferenceDone(model: string, version: string, latencyUs: number): void {
    this.latency.update(this.modelLabels(model, version), latencyUs);
  }

  dequeued(model: string, version: string, waitedUs: number): void {
    this.queueLatency.update(this.modelLabels(model, version), waitedUs);
    this.queueTime.update(this.hostLabels, waitedUs / 1000);
  }

  response(status: number): void {
    const family = status >= 200 && status < 300 ? '2XX' : status >= 400 && status < 500 ? '4XX' : '5XX';
    this.responses[family].update(this.hostLabels, 1);
  }

  /** The system collector's gauges, registered with its first sample. */
  system(sample: SystemSample): void {
    for (const [name, value] of Object.entries(sample) as Array<[keyof SystemSample, number]>) {
      (this.systemGauges[name] ??= this.gauge(name, SYSTEM_UNITS[name], HOST_LABELS)).update(this.hostLabels, value);
    }
  }

  workerLoaded(workerName: string, ms: number): void {
    this.workerLoadTime.update({ WorkerName: workerName, ...this.hostLabels }, ms);
  }

  /** Metrics a handler emitted through context.metrics while answering `requestIds`. */
  handlerMetrics(metrics: readonly WireMetric[], requestIds: readonly string[]): void {
    for (const m of metrics) {
      const labels = { ...m.dimensions, Hostname: this.host };
      this.modelMetric(m, Object.keys(labels))?.update(labels, m.value, requestIds);
    }
  }

  /**
   * A handler metric's family, registered on first sight with the dimensions it came with, as
   * TorchServe's `model_metrics_auto_detect`; the ones its metrics.yaml declares keep its units.
   */
  private modelMetric(m: WireMetric, labelNames: string[]): Series<string> | undefined {
    const existing = this.modelMetrics.get(m.name);
    if (existing) return existing;
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(m.name) || this.registry.getSingleMetric(m.name)) return undefined;
    const unit = DECLARED_MODEL_UNITS[m.name] ?? m.unit;
    const opts = { name: m.name, help: help(m.type, unit), labelNames, registers: [this.registry] };
    const series = this.series(m.name, m.type === 'counter' ? new Counter(opts) : new Gauge(opts), unit, 'model');
    this.modelMetrics.set(m.name, series);
    return series;
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
    return lines.length > 0 ? lines.join('\n') + '\n' : '';
  }

  private get hostLabels(): Record<HostLabel, string> {
    return { Level: 'Host', Hostname: this.host };
  }

  private modelLabels(model: string, version: string): Record<ModelLabel, string> {
    return { model_name: model, model_version: version, hostname: this.host };
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
  return Object.entries(le === undefined ? rest : { ...rest, le }).map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}",`).join('');
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

/**
 * @module metrics/registry
 * The metrics TorchServe users scrape, kept in a prom-client registry and written in TorchServe's
 * Prometheus text (Java simpleclient 0.9): names kept as configured (no `_total` added), every label
 * set ending in a comma, values as Java doubles (`3.0`). `metrics_mode=log` serves an empty body,
 * `legacy` only the three ts_* counters, `prometheus` everything.
 */
import { hostname } from 'node:os';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricsMode } from '../config/server-config.js';
import type { WireMetric } from '../worker/protocol.js';

const LEGACY = ['ts_inference_requests_total', 'ts_inference_latency_microseconds', 'ts_queue_latency_microseconds'];
const MODEL_LABELS = ['model_name', 'model_version', 'hostname'] as const;
const HOST_LABELS = ['Level', 'Hostname'] as const;

type ModelLabel = (typeof MODEL_LABELS)[number];

export class MetricsRegistry {
  readonly host = hostname();
  private readonly registry = new Registry();
  private readonly mode: MetricsMode;
  private readonly requests: Counter<ModelLabel>;
  private readonly latency: Counter<ModelLabel>;
  private readonly queueLatency: Counter<ModelLabel>;
  private readonly responses: Record<'2XX' | '4XX' | '5XX', Counter<(typeof HOST_LABELS)[number]>>;
  private readonly queueTime: Gauge<(typeof HOST_LABELS)[number]>;
  private readonly workerLoadTime: Gauge<'WorkerName' | 'Level' | 'Hostname'>;
  private readonly modelMetrics = new Map<string, Counter | Gauge>();
  private readonly rejections: Counter<ModelLabel>;
  private readonly timeouts: Counter<ModelLabel>;
  private readonly restarts: Counter<ModelLabel>;
  private readonly batchSizes: Histogram<ModelLabel>;
  private queueSizes: () => ReadonlyArray<{ model: string; version: string; size: number }> = () => [];

  constructor(mode: MetricsMode) {
    this.mode = mode;
    const counter = <L extends string>(name: string, unit: string, labelNames: readonly L[]): Counter<L> =>
      new Counter({ name, help: help('counter', unit), labelNames, registers: [this.registry] });
    const gauge = <L extends string>(name: string, unit: string, labelNames: readonly L[]): Gauge<L> =>
      new Gauge({ name, help: help('gauge', unit), labelNames, registers: [this.registry] });
    this.requests = counter('ts_inference_requests_total', 'Count', MODEL_LABELS);
    this.latency = counter('ts_inference_latency_microseconds', 'Microseconds', MODEL_LABELS);
    this.queueLatency = counter('ts_queue_latency_microseconds', 'Microseconds', MODEL_LABELS);
    this.responses = {
      '2XX': counter('Requests2XX', 'Count', HOST_LABELS),
      '4XX': counter('Requests4XX', 'Count', HOST_LABELS),
      '5XX': counter('Requests5XX', 'Count', HOST_LABELS),
    };
    this.queueTime = gauge('QueueTime', 'Milliseconds', HOST_LABELS);
    this.workerLoadTime = gauge('WorkerLoadTime', 'Milliseconds', ['WorkerName', 'Level', 'Hostname'] as const);
    // tsserve's own per-model health metrics: what a TorchServe user had to dig out of the logs.
    this.rejections = counter('ts_requests_rejected_total', 'Count', MODEL_LABELS);
    this.timeouts = counter('ts_response_timeouts_total', 'Count', MODEL_LABELS);
    this.restarts = counter('ts_worker_restarts_total', 'Count', MODEL_LABELS);
    this.batchSizes = new Histogram({
      name: 'ts_batch_size',
      help: help('histogram', 'Count'),
      labelNames: MODEL_LABELS,
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers: [this.registry],
    });
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

  /** Where `ts_queue_size` reads the queues from, at each scrape. */
  watchQueues(source: () => ReadonlyArray<{ model: string; version: string; size: number }>): void {
    this.queueSizes = source;
  }

  /** A request refused with 503 because the queue was full or the model had no worker. */
  rejected(model: string, version: string): void {
    this.rejections.inc(this.modelLabels(model, version));
  }

  responseTimedOut(model: string, version: string): void {
    this.timeouts.inc(this.modelLabels(model, version));
  }

  workerRestarted(model: string, version: string): void {
    this.restarts.inc(this.modelLabels(model, version));
  }

  batchFormed(model: string, version: string, size: number): void {
    this.batchSizes.observe(this.modelLabels(model, version), size);
  }

  /** A prediction request that found its model; `version` is the URL's or `default`. */
  inferenceRequest(model: string, version: string): void {
    this.requests.inc(this.modelLabels(model, version));
  }

  inferenceDone(model: string, version: string, latencyUs: number): void {
    this.latency.inc(this.modelLabels(model, version), latencyUs);
  }

  dequeued(model: string, version: string, waitedUs: number): void {
    this.queueLatency.inc(this.modelLabels(model, version), waitedUs);
    this.queueTime.set({ Level: 'Host', Hostname: this.host }, waitedUs / 1000);
  }

  response(status: number): void {
    const family = status >= 200 && status < 300 ? '2XX' : status >= 400 && status < 500 ? '4XX' : '5XX';
    this.responses[family].inc({ Level: 'Host', Hostname: this.host });
  }

  workerLoaded(workerName: string, ms: number): void {
    this.workerLoadTime.set({ WorkerName: workerName, Level: 'Host', Hostname: this.host }, ms);
  }

  /** Metrics a handler emitted through context.metrics. */
  handlerMetrics(metrics: readonly WireMetric[]): void {
    for (const m of metrics) {
      const labels = { ...m.dimensions, Hostname: this.host };
      const metric = this.modelMetric(m, Object.keys(labels));
      if (!metric) continue;
      if (metric instanceof Counter) metric.inc(labels, m.value);
      else metric.set(labels, m.value);
    }
  }

  private modelMetric(m: WireMetric, labelNames: string[]): Counter | Gauge | undefined {
    const existing = this.modelMetrics.get(m.name);
    if (existing) return existing;
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(m.name) || this.registry.getSingleMetric(m.name)) return undefined;
    const opts = { name: m.name, help: help(m.type, m.unit), labelNames, registers: [this.registry] };
    const metric = m.type === 'counter' ? new Counter(opts) : new Gauge(opts);
    this.modelMetrics.set(m.name, metric);
    return metric;
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

  private modelLabels(model: string, version: string): Record<ModelLabel, string> {
    return { model_name: model, model_version: version, hostname: this.host };
  }
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

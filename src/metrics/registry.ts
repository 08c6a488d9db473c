/**
 * @module metrics/registry
 * The metrics TorchServe users scrape, kept in a prom-client registry and written in TorchServe's
 * Prometheus text (Java simpleclient 0.9): names kept as configured (no `_total` added), every label
 * set ending in a comma, values as Java doubles (`3.0`). `metrics_mode=log` serves an empty body,
 * `legacy` only the three ts_* counters, `prometheus` everything.
 */
import { hostname } from 'node:os';
import { Counter, Gauge, Registry } from 'prom-client';
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
      for (const v of f.values) lines.push(`${f.name}{${formatLabels(v.labels)}} ${javaDouble(v.value)}`);
    }
    return lines.length > 0 ? lines.join('\n') + '\n' : '';
  }

  private modelLabels(model: string, version: string): Record<ModelLabel, string> {
    return { model_name: model, model_version: version, hostname: this.host };
  }
}

function help(type: string, unit: string): string {
  return `Torchserve prometheus ${type} metric with unit: ${unit}`;
}

function formatLabels(labels: Record<string, string | number | undefined>): string {
  return Object.entries(labels).map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}",`).join('');
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

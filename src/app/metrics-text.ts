/**
 * @module app/metrics-text
 * tsserve's /metrics (Prometheus text, as TorchServe writes it) read into samples, and the samples
 * into one reading for the live page (app/live-series.ts): per model its counters, gauges and
 * request-latency histogram, summed over versions and hosts; the server's answers and memory.
 */
import type { Buckets, ModelReading, Reading } from './live-series.js';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g;

/** Every sample of the text; comments and blank lines skipped. */
export function parseMetricsText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels = keyedBy<string>();
    for (const [, key, value] of (m[2] ?? '').matchAll(LABEL)) labels[key!] = value!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1]!, labels, value: number(m[3]!) });
  }
  return samples;
}

/**
 * An object keyed by names from the scrape (models, labels), with no prototype: a model named
 * `constructor` or `toString` found Object's methods under its name (`sums[model] ?? 0` read a
 * function), and a label named `__proto__` would have set the prototype.
 */
function keyedBy<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/** A Prometheus number: Java doubles (`3.0`, `1.0E7`) and the infinities as `+Inf`. */
function number(text: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}

/** Per model name, the sum of the samples of `name` over versions and hosts. */
export function sumByModel(samples: readonly Sample[], name: string): Record<string, number> {
  const sums = keyedBy<number>();
  for (const s of samples) {
    const model = s.labels.model_name;
    if (s.name === name && model !== undefined) sums[model] = (sums[model] ?? 0) + s.value;
  }
  return sums;
}

/** The buckets of histogram `name` per model, bucket counts summed over versions and hosts. */
function bucketsByModel(samples: readonly Sample[], name: string): Record<string, Buckets> {
  const counts = new Map<string, Map<number, number>>();
  for (const s of samples) {
    const model = s.labels.model_name;
    if (s.name !== `${name}_bucket` || model === undefined || s.labels.le === undefined) continue;
    const byBound = counts.get(model) ?? new Map<number, number>();
    const bound = number(s.labels.le);
    byBound.set(bound, (byBound.get(bound) ?? 0) + s.value);
    counts.set(model, byBound);
  }
  const buckets = keyedBy<Buckets>();
  for (const [model, byBound] of counts) {
    const bounds = [...byBound.keys()].filter(Number.isFinite).sort((a, b) => a - b);
    const cumulative = bounds.map((b) => byBound.get(b)!);
    buckets[model] = { bounds, cumulative, count: byBound.get(Number.POSITIVE_INFINITY) ?? cumulative.at(-1) ?? 0 };
  }
  return buckets;
}

/** Where each number of a model's reading comes from: a family, summed over versions and hosts. */
const MODEL_FAMILIES = {
  requests: 'ts_inference_requests_total',
  refused: 'ts_requests_rejected_total',
  timedOut: 'ts_response_timeouts_total',
  queued: 'ts_queue_size',
  room: 'ts_queue_remaining_capacity',
  workersReady: 'ts_workers_ready',
  latencyMicroseconds: 'ts_inference_latency_microseconds',
} as const;
type ModelNumber = keyof typeof MODEL_FAMILIES;

/** Every registered model (its queue and workers are written at each scrape) or one asked for, and the server's own numbers, read at `at`. */
export function liveReading(samples: readonly Sample[], at: number): Reading {
  const fields = Object.keys(MODEL_FAMILIES) as ModelNumber[];
  const sums = new Map(fields.map((field) => [field, sumByModel(samples, MODEL_FAMILIES[field])]));
  const latency = bucketsByModel(samples, 'ts_request_seconds');
  const models = keyedBy<ModelReading>();
  for (const model of new Set((['queued', 'workersReady', 'requests'] as const).flatMap((field) => Object.keys(sums.get(field)!)))) {
    const numbers = Object.fromEntries(fields.map((field) => [field, sums.get(field)![model] ?? 0])) as Record<ModelNumber, number>;
    models[model] = { ...numbers, latency: latency[model] ?? null };
  }
  const total = (name: string): number => samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0);
  const memory = samples.find((s) => s.name === 'MemoryUsed');
  return {
    at,
    models,
    responses: { '2XX': total('Requests2XX'), '4XX': total('Requests4XX'), '5XX': total('Requests5XX') },
    memoryUsedMB: memory ? memory.value : null,
  };
}

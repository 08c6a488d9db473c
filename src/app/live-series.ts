/**
 * @module app/live-series
 * The live page's arithmetic, from readings of tsserve's /metrics (app/metrics-text.ts) to the
 * points it charts: per-second rates of counters and quantiles of histograms over a window, as
 * Prometheus' rate() and histogram_quantile() compute them, so that the page and the Grafana
 * dashboard show the same numbers. It imports nothing: tsserve-app serves its compiled file to the
 * browser as it is (/lib/live-series.js), and the page imports it there.
 */

/**
 * A histogram's buckets: the finite upper bounds ascending, the cumulative count of each, and the
 * count of all (the +Inf bucket, kept apart: JSON has no Infinity, and the page reads this as JSON).
 */
export interface Buckets {
  readonly bounds: readonly number[];
  readonly cumulative: readonly number[];
  readonly count: number;
}

/** One model's counters (cumulative) and gauges at one reading, summed over its versions. */
export interface ModelReading {
  readonly requests: number;
  readonly refused: number;
  readonly timedOut: number;
  readonly queued: number;
  readonly room: number;
  readonly workersReady: number;
  /** TorchServe's ts_inference_latency_microseconds: the latencies of answered predictions, added up. */
  readonly latencyMicroseconds: number;
  /** ts_request_seconds, once tsserve serves it; null before. */
  readonly latency: Buckets | null;
}

/** One reading of /metrics: when, per model, and the server's answers (every API) and memory. */
export interface Reading {
  /** Milliseconds since the epoch. */
  readonly at: number;
  readonly models: Readonly<Record<string, ModelReading>>;
  readonly responses: { readonly '2XX': number; readonly '4XX': number; readonly '5XX': number };
  readonly memoryUsedMB: number | null;
}

/** What one chart of a model shows at one moment: a value per line, null where there is none yet. */
export type Point = Readonly<Record<string, number | null>>;

/** Rates are over the readings of the last 5 s, quantiles over the last 10 s: steady at a 1 s poll. */
export const RATE_WINDOW_MS = 5_000;
export const QUANTILE_WINDOW_MS = 10_000;

/** A counter's increase per second; a counter that went down (tsserve restarted) counts from zero, as in rate(). */
export function perSecond(older: number, newer: number, seconds: number): number {
  if (seconds <= 0) return 0;
  return (newer >= older ? newer - older : newer) / seconds;
}

/**
 * The q-quantile of what a histogram counted between two readings, interpolated within its bucket
 * as histogram_quantile() does; null when it counted nothing. Past the last finite bound, that bound.
 */
export function quantile(q: number, older: Buckets | null, newer: Buckets): number | null {
  const sameBounds = older !== null && older.bounds.join() === newer.bounds.join();
  const increase = (now: number, then: number | undefined): number => {
    const before = sameBounds ? (then ?? 0) : 0;
    return now >= before ? now - before : now;
  };
  const counts = [...newer.cumulative.map((c, i) => increase(c, older?.cumulative[i])), increase(newer.count, older?.count)];
  const total = counts.at(-1)!;
  if (total <= 0) return null;
  const rank = q * total;
  const i = counts.findIndex((c) => c >= rank);
  const bounds = newer.bounds;
  if (i === bounds.length) return bounds.length > 0 ? bounds.at(-1)! : null;
  const lower = i === 0 ? 0 : bounds[i - 1]!;
  const below = i === 0 ? 0 : counts[i - 1]!;
  const inBucket = counts[i]! - below;
  return inBucket > 0 ? lower + ((bounds[i]! - lower) * (rank - below)) / inBucket : lower;
}

/** The earliest of `history` (oldest first) within `windowMs` before reading `i`; undefined at the first. */
function windowStart(history: readonly Reading[], i: number, windowMs: number): Reading | undefined {
  const at = history[i]!.at;
  const start = history.findIndex((r) => r.at >= at - windowMs);
  return start < i ? history[start] : undefined;
}

/** The charts of one model, a point per reading from the second on: throughput, errors, latency, queue and workers. */
export function modelCharts(history: readonly Reading[], model: string): Record<'throughput' | 'errors' | 'latency' | 'queue' | 'workers', Point[]> {
  const charts = { throughput: [] as Point[], errors: [] as Point[], latency: [] as Point[], queue: [] as Point[], workers: [] as Point[] };
  for (let i = 1; i < history.length; i++) {
    const now = history[i]!.models[model];
    const before = windowStart(history, i, RATE_WINDOW_MS)?.models[model];
    if (!now) continue;
    charts.queue.push({ waiting: now.queued, 'room left': now.room });
    charts.workers.push({ ready: now.workersReady });
    if (!before) continue;
    const seconds = (history[i]!.at - windowStart(history, i, RATE_WINDOW_MS)!.at) / 1000;
    charts.throughput.push({ 'predictions/s': perSecond(before.requests, now.requests, seconds) });
    charts.errors.push({ 'refused/s': perSecond(before.refused, now.refused, seconds), 'timed out/s': perSecond(before.timedOut, now.timedOut, seconds) });
    charts.latency.push(latencyPoint(windowStart(history, i, QUANTILE_WINDOW_MS)?.models[model] ?? before, now));
  }
  return charts;
}

/** p50 and p99 from ts_request_seconds; before tsserve serves it, the mean from TorchServe's counters. */
function latencyPoint(before: ModelReading, now: ModelReading): Point {
  if (now.latency) return { p50: quantile(0.5, before.latency, now.latency), p99: quantile(0.99, before.latency, now.latency) };
  const answered = now.requests - now.refused - (before.requests - before.refused);
  return { mean: answered > 0 ? (now.latencyMicroseconds - before.latencyMicroseconds) / answered / 1e6 : null };
}

/** The server's chart: its answers per second by class, and memory used. */
export function serverCharts(history: readonly Reading[]): Record<'responses' | 'memory', Point[]> {
  const charts = { responses: [] as Point[], memory: [] as Point[] };
  for (let i = 1; i < history.length; i++) {
    const now = history[i]!;
    charts.memory.push({ used: now.memoryUsedMB });
    const before = windowStart(history, i, RATE_WINDOW_MS);
    if (!before) continue;
    const seconds = (now.at - before.at) / 1000;
    const rate = (k: '2XX' | '4XX' | '5XX'): number => perSecond(before.responses[k], now.responses[k], seconds);
    charts.responses.push({ '2XX/s': rate('2XX'), '4XX/s': rate('4XX'), '5XX/s': rate('5XX') });
  }
  return charts;
}

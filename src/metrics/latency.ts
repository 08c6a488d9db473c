/**
 * @module metrics/latency
 * The per-model latency histograms (ts_request_seconds, ts_queue_wait_seconds and the worker's
 * stages, docs/metrics.md): five observations per prediction, tracing on or off, so they are kept
 * as plain bucket counts per model version and written out only when /metrics is read. Through
 * prom-client each observation cost about 0.9 µs (a labels object, its hash, the bucket's
 * search), 4.5 µs per prediction, a percent of mnist's whole cost per answer; here it is a map
 * lookup and an increment. Served in `prometheus` mode only, in TorchServe's Prometheus text as
 * registry.ts writes every other family.
 */

/** One model version's series: counts per bucket (not cumulative; the last is +Inf), their sum. */
interface Series {
  /** The label pairs as written, each with its trailing comma. */
  readonly labels: string;
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

export class LatencyHistogram {
  readonly name: string;
  private readonly buckets: readonly number[];
  /** model -> version -> series. */
  private readonly series = new Map<string, Map<string, Series>>();
  private readonly labelsOf: (model: string, version: string) => string;

  /** `labelsOf` writes a series' label pairs (registry.ts's form). */
  constructor(name: string, buckets: readonly number[], labelsOf: (model: string, version: string) => string) {
    this.name = name;
    this.buckets = buckets;
    this.labelsOf = labelsOf;
  }

  /** `seconds`, observed `times` times. */
  observe(model: string, version: string, seconds: number, times = 1): void {
    const s = this.seriesOf(model, version);
    let i = 0;
    while (i < this.buckets.length && seconds > this.buckets[i]!) i++;
    s.counts[i]! += times;
    s.sum += seconds * times;
    s.count += times;
  }

  private seriesOf(model: string, version: string): Series {
    let versions = this.series.get(model);
    if (!versions) {
      versions = new Map();
      this.series.set(model, versions);
    }
    let s = versions.get(version);
    if (!s) {
      s = { labels: this.labelsOf(model, version), counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 };
      versions.set(version, s);
    }
    return s;
  }

  /** The family's sample lines: each series' cumulative buckets, `le` last, then its sum and count. */
  samples(format: (value: number) => string): string[] {
    const lines: string[] = [];
    for (const versions of this.series.values()) {
      for (const s of versions.values()) {
        let cumulative = 0;
        for (const [i, le] of [...this.buckets.map(String), '+Inf'].entries()) {
          cumulative += s.counts[i]!;
          lines.push(`${this.name}_bucket{${s.labels}le="${le}",} ${format(cumulative)}`);
        }
        lines.push(`${this.name}_sum{${s.labels}} ${format(s.sum)}`, `${this.name}_count{${s.labels}} ${format(s.count)}`);
      }
    }
    return lines;
  }
}

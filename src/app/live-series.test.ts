// The live page's arithmetic without a browser: rates and quantiles as Prometheus computes them (the
// p99 below is the one promtool computes for deploy/monitoring's alert test), and the points of a
// model's charts from a history of readings.
import t from 'tap';
import { type Buckets, type ModelReading, modelCharts, perSecond, quantile, type Reading, serverCharts } from './live-series.js';

const bounds = [0.5, 1, 2.5];
/** Buckets of `bounds` with these cumulative counts, the last the +Inf bucket's. */
const buckets = (...counts: number[]): Buckets => ({ bounds, cumulative: counts.slice(0, -1), count: counts.at(-1)! });

t.test("rates: a counter's increase per second; a counter that went down counts from zero", async (t) => {
  t.equal(perSecond(10, 30, 4), 5);
  t.equal(perSecond(100, 6, 2), 3, 'tsserve restarted: 6 since');
  t.equal(perSecond(1, 2, 0), 0);
});

t.test('quantiles of what a histogram counted between two readings, as histogram_quantile()', async (t) => {
  // deploy/monitoring/tsserve-alerts.test.yaml's "nst" over 5 minutes: promtool says p99 = 2.484 s.
  const before = buckets(0, 0, 0, 0);
  const after = buckets(0, 5, 100, 100);
  t.equal(quantile(0.99, before, after)!.toFixed(3), '2.484');
  t.equal(quantile(0.5, before, after), 1 + 1.5 * (45 / 95));
  t.equal(quantile(0.5, null, buckets(10, 10, 10, 10)), 0.25, 'the first bucket from 0');
  t.equal(quantile(0.99, null, buckets(0, 0, 0, 4)), 2.5, 'past the last finite bound: that bound');
  t.equal(quantile(0.99, after, after), null, 'nothing counted between them');
  t.equal(quantile(0.5, buckets(50, 50, 50, 50), buckets(2, 2, 2, 2)), 0.25, 'a reset counts from zero');
});

const model = (requests: number, latency: Buckets | null = null): ModelReading => ({
  requests,
  refused: requests / 10,
  timedOut: 0,
  queued: 3,
  room: 97,
  workersReady: 2,
  latencyMicroseconds: requests * 20_000,
  latency,
});
const reading = (at: number, models: Record<string, ModelReading>): Reading => ({
  at,
  models,
  responses: { '2XX': at / 100, '4XX': 0, '5XX': 0 },
  memoryUsedMB: 500,
});

t.test("a model's charts from readings a second apart: rates over 5 s, the mean latency before the histogram exists", async (t) => {
  const history = Array.from({ length: 8 }, (_, i) => reading(i * 1000, { mnist: model(i * 100) }));
  const charts = modelCharts(history, 'mnist');
  t.equal(charts.throughput.length, 7, 'a point per reading from the second on');
  t.same(charts.throughput.at(-1), { 'predictions/s': 100 });
  t.same(charts.errors.at(-1), { 'refused/s': 10, 'timed out/s': 0 });
  t.same(charts.queue.at(-1), { waiting: 3, 'room left': 97 });
  t.same(charts.workers.at(-1), { ready: 2 });
  // 20 ms a request over the answered ones (refused ones are never timed).
  t.same(charts.latency.at(-1), { mean: (500 * 20_000) / 450 / 1e6 });
  t.same(serverCharts(history).responses.at(-1), { '2XX/s': 10, '4XX/s': 0, '5XX/s': 0 });
  t.same(modelCharts(history, 'nst').throughput, [], 'a model never read has no points');
});

t.test('p50 and p99 from ts_request_seconds once tsserve serves it, over the last 10 s', async (t) => {
  const history = Array.from({ length: 12 }, (_, i) => reading(i * 1000, { mnist: model(i * 10, buckets(0, i, i * 10, i * 10)) }));
  const last = modelCharts(history, 'mnist').latency.at(-1)!;
  // Between readings 1 and 11: 10 in (0.5, 1], 90 in (1, 2.5].
  t.equal(last.p50, 1 + 1.5 * (40 / 90));
  t.equal(last.p99, 1 + 1.5 * (89 / 90));
});

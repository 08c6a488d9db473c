// tsserve's /metrics text read into the live page's reading, without a server: TorchServe's format
// (label sets ending in a comma, Java doubles), summed over versions and hosts.
import t from 'tap';
import { liveReading, parseMetricsText, sumByModel } from './metrics-text.js';

const TEXT = `# HELP Requests2XX Torchserve prometheus counter metric with unit: Count
# TYPE Requests2XX counter
Requests2XX{Level="Host",Hostname="vm",} 12.0
# TYPE Requests4XX counter
# TYPE Requests5XX counter
Requests5XX{Level="Host",Hostname="vm",} 1.0
ts_inference_requests_total{model_name="mnist",model_version="default",hostname="vm",} 10.0
ts_inference_requests_total{model_name="mnist",model_version="2.0",hostname="vm",} 3.0
ts_inference_latency_microseconds{model_name="mnist",model_version="default",hostname="vm",} 1.3E7
ts_requests_rejected_total{model_name="mnist",model_version="1.0",hostname="vm",} 1.0
ts_queue_size{model_name="mnist",model_version="1.0",hostname="vm",} 2.0
ts_queue_size{model_name="mnist",model_version="2.0",hostname="vm",} 1.0
ts_queue_remaining_capacity{model_name="mnist",model_version="1.0",hostname="vm",} 98.0
ts_workers_ready{model_name="mnist",model_version="1.0",hostname="vm",} 2.0
ts_workers_ready{model_name="nst",model_version="1.0",hostname="vm",} 0.0
ts_request_seconds_bucket{model_name="mnist",model_version="1.0",hostname="vm",le="0.01",} 4.0
ts_request_seconds_bucket{model_name="mnist",model_version="1.0",hostname="vm",le="+Inf",} 9.0
ts_request_seconds_bucket{model_name="mnist",model_version="2.0",hostname="vm",le="+Inf",} 1.0
ts_request_seconds_bucket{model_name="mnist",model_version="2.0",hostname="vm",le="0.01",} 1.0
MemoryUsed{Level="Host",Hostname="vm",} 624.9
HandlerTime{ModelName="a \\"quoted\\" name",Level="Model",Hostname="vm",} 1.5
`;

t.test('samples: names, labels (escapes undone) and values, comments skipped', async (t) => {
  const samples = parseMetricsText(TEXT);
  t.equal(samples.length, 17);
  t.same(samples[0], { name: 'Requests2XX', labels: { Level: 'Host', Hostname: 'vm' }, value: 12 });
  t.equal(samples.find((s) => s.name === 'ts_inference_latency_microseconds')!.value, 1.3e7, 'a Java double with an exponent');
  t.equal(samples.find((s) => s.name === 'HandlerTime')!.labels.ModelName, 'a "quoted" name');
  t.same(sumByModel(samples, 'ts_inference_requests_total'), { mnist: 13 }, 'summed over the versions');
});

t.test("a reading: each model's numbers over its versions, its histogram's buckets in order, the server's", async (t) => {
  const reading = liveReading(parseMetricsText(TEXT), 1000);
  t.same(reading.models.mnist, {
    requests: 13,
    refused: 1,
    timedOut: 0,
    queued: 3,
    room: 98,
    workersReady: 2,
    latencyMicroseconds: 1.3e7,
    latency: { bounds: [0.01], cumulative: [5], count: 10 },
  });
  t.same(reading.models.nst, { requests: 0, refused: 0, timedOut: 0, queued: 0, room: 0, workersReady: 0, latencyMicroseconds: 0, latency: null });
  t.same(Object.keys(reading.models).sort(), ['mnist', 'nst'], 'every model with a queue, workers or requests counted');
  t.same(reading.responses, { '2XX': 12, '4XX': 0, '5XX': 1 });
  t.equal(reading.memoryUsedMB, 624.9);
  t.equal(reading.at, 1000);
  t.same(JSON.parse(JSON.stringify(reading)), reading, 'the same once sent as JSON, as the page gets it');
});

t.test("models named as Object's own properties (constructor, toString, __proto__) read as any other", async (t) => {
  const text = ['constructor', 'toString', 'valueOf', '__proto__']
    .map(
      (m) =>
        `ts_inference_requests_total{model_name="${m}",model_version="1.0",hostname="vm",} 2.0\nts_queue_size{model_name="${m}",model_version="1.0",hostname="vm",} 1.0\n`,
    )
    .join('');
  const reading = liveReading(parseMetricsText(text), 0);
  for (const model of ['constructor', 'toString', 'valueOf', '__proto__']) {
    t.match(reading.models[model], { requests: 2, refused: 0, timedOut: 0, queued: 1, room: 0, latency: null }, model);
  }
  t.same(Object.keys(JSON.parse(JSON.stringify(reading)).models).sort(), ['__proto__', 'constructor', 'toString', 'valueOf'], 'all four sent to the page');
});

// The metrics registry's text and its handling of a handler's metrics, without a server.
import t from 'tap';
import { javaDouble, MetricsRegistry } from './registry.js';

t.test("numbers are written as Java's Double.toString writes them", async (t) => {
  t.same([0, 3, -2, 0.25, 1e7, 12345678, 0.0005, Number.NaN, Infinity, -Infinity].map(javaDouble), [
    '0.0',
    '3.0',
    '-2.0',
    '0.25',
    '1.0E7',
    '1.2345678E7',
    '5.0E-4',
    'NaN',
    '+Inf',
    '-Inf',
  ]);
});

t.test("a handler's undeclared metric is dropped with one warning; one with the wrong dimensions too", async (t) => {
  const warnings: string[] = [];
  const metrics = new MetricsRegistry('prometheus', { warn: (message) => warnings.push(message) });
  const undeclared = { name: 'EchoCalls', unit: 'Count', type: 'counter', value: 1, dimensions: { ModelName: 'echo' } } as const;
  for (let i = 0; i < 3; i++) metrics.handlerMetrics([undeclared], ['r1']);
  t.notMatch(await metrics.render(), 'EchoCalls');
  t.same(warnings, [
    'Dropping model metric EchoCalls: metrics_config does not declare it (declare it under model_metrics, or set model_metrics_auto_detect=true)',
  ]);

  metrics.handlerMetrics([{ name: 'HandlerTime', unit: 'ms', type: 'gauge', value: 5, dimensions: { ModelName: 'echo' } }], ['r2']);
  t.match(warnings[1], /^Dropping model metric HandlerTime: it came with dimensions ModelName, metrics_config declares ModelName, Level$/);
  metrics.handlerMetrics([{ name: 'HandlerTime', unit: 'ms', type: 'gauge', value: 5, dimensions: { ModelName: 'echo', Level: 'Model' } }], ['r3']);
  t.match(await metrics.render(['HandlerTime']), /^HandlerTime\{ModelName="echo",Level="Model",Hostname="[^"]+",\} 5\.0$/m, 'the declared one is kept');
});

t.test("model_metrics_auto_detect: an undeclared metric is registered on first sight, unless its name is not Prometheus's or a server metric's", async (t) => {
  const warnings: string[] = [];
  const metrics = new MetricsRegistry('prometheus', { autoDetect: true, warn: (message) => warnings.push(message) });
  metrics.handlerMetrics(
    [
      { name: 'EchoCalls', unit: 'Count', type: 'counter', value: 2, dimensions: { ModelName: 'echo' } },
      { name: 'bad name', unit: 'Count', type: 'counter', value: 1, dimensions: {} },
      { name: 'ts_inference_requests_total', unit: 'Count', type: 'counter', value: 1, dimensions: {} },
    ],
    ['r1'],
  );
  t.match(await metrics.render(['EchoCalls']), /^EchoCalls\{ModelName="echo",Hostname="[^"]+",\} 2\.0$/m);
  t.same(warnings, [
    'Dropping model metric bad name: not a Prometheus metric name, or the name of a server metric',
    'Dropping model metric ts_inference_requests_total: not a Prometheus metric name, or the name of a server metric',
  ]);
});

t.test('the latency histograms: cumulative buckets up to +Inf, sum and count per model version; a stage counts once per request', async (t) => {
  const metrics = new MetricsRegistry('prometheus');
  const host = metrics.host;
  metrics.requestAnswered('mnist', '1.0', 0.0004);
  metrics.requestAnswered('mnist', '1.0', 0.002);
  metrics.requestAnswered('mnist', '1.0', 20);
  const t0 = 1_700_000_000_000;
  metrics.stagesRan('mnist', '1.0', [{ name: 'inference', start: t0, end: t0 + 3 }], 8);
  const text = await metrics.render();
  const series = `model_name="mnist",model_version="1.0",hostname="${host}",`;
  t.match(
    text,
    `# HELP ts_request_seconds Torchserve prometheus histogram metric with unit: Seconds\n# TYPE ts_request_seconds histogram\nts_request_seconds_bucket{${series}le="0.0005",} 1.0\nts_request_seconds_bucket{${series}le="0.001",} 1.0\nts_request_seconds_bucket{${series}le="0.0025",} 2.0\n`,
  );
  t.match(
    text,
    `ts_request_seconds_bucket{${series}le="10",} 2.0\nts_request_seconds_bucket{${series}le="+Inf",} 3.0\nts_request_seconds_sum{${series}} 20.0024\nts_request_seconds_count{${series}} 3.0\n`,
  );
  t.match(
    text,
    `ts_inference_seconds_bucket{${series}le="0.0025",} 0.0\nts_inference_seconds_bucket{${series}le="0.005",} 8.0\n`,
    'a batch of 8: eight observations',
  );
  t.match(text, `ts_inference_seconds_count{${series}} 8.0\n`);
  t.match(text, '# TYPE ts_preprocess_seconds histogram\n# HELP', 'a family without samples has its HELP and TYPE');
  const filtered = await metrics.render(['ts_inference_seconds']);
  t.notMatch(filtered, 'ts_request_seconds', 'name[] filters them too');
  t.equal(await new MetricsRegistry('legacy').render(['ts_request_seconds']), '', 'legacy serves none');
});

t.test("a batch refused and run request by request: its own stages count for none, each request's for one", async (t) => {
  const metrics = new MetricsRegistry('prometheus');
  const t0 = 1_700_000_000_000;
  const stages = [
    { name: 'preprocess' as const, start: t0, end: t0 + 1, requests: 0 },
    { name: 'preprocess' as const, start: t0 + 1, end: t0 + 2, requests: 1 },
    { name: 'inference' as const, start: t0 + 2, end: t0 + 3, requests: 1 },
    { name: 'preprocess' as const, start: t0 + 3, end: t0 + 4, requests: 1 },
  ];
  metrics.stagesRan('mnist', '1.0', stages, 2);
  const text = await metrics.render();
  t.match(text, /ts_preprocess_seconds_count\{[^}]*\} 2\.0\n/, 'two requests preprocessed, each once');
  t.match(text, /ts_inference_seconds_count\{[^}]*\} 1\.0\n/, 'one ran the model');
});

t.test('counts bound once (a refusal before its body is read, a response) add up across scrapes, and each is a line where the mode logs it', async (t) => {
  const model = { name: 'mnist', version: '1.0' };
  const served = new MetricsRegistry('prometheus');
  for (let i = 0; i < 2; i++) {
    served.refusedEarly(model, 'default');
    served.response(503);
  }
  served.refusedEarly(model, '1.0');
  const first = await served.render();
  t.match(first, /^ts_requests_rejected_total\{model_name="mnist",model_version="1\.0",[^\n]*\} 3\.0$/m);
  t.match(first, /^ts_inference_requests_total\{model_name="mnist",model_version="default",[^\n]*\} 2\.0$/m, 'by the version asked for');
  t.match(first, /^ts_inference_requests_total\{model_name="mnist",model_version="1\.0",[^\n]*\} 1\.0$/m);
  t.match(first, /^Requests5XX\{Level="Host",Hostname="[^"]+",\} 2\.0$/m);
  served.refusedEarly(model, 'default');
  served.response(503);
  t.match(await served.render(), /^ts_requests_rejected_total\{[^\n]*\} 4\.0$/m, 'what came after a scrape adds to it');
  t.match(await served.render(), /^Requests5XX\{[^\n]*\} 3\.0$/m, 'and a scrape with nothing new changes nothing');

  const lines: string[] = [];
  const legacy = new MetricsRegistry('legacy', { lines: (_file, line) => lines.push(line) });
  legacy.refusedEarly(model, 'default');
  legacy.refusedEarly(model, 'default');
  legacy.response(503);
  t.same(
    lines.map((l) => l.split(':')[0]),
    ['ts_requests_rejected_total.Count', 'ts_requests_rejected_total.Count', 'Requests5XX.Count'],
    'legacy logs each update of a family it does not serve, as it comes',
  );
  t.match(await legacy.render(), /^ts_inference_requests_total\{[^\n]*model_version="default"[^\n]*\} 2\.0$/m, 'and serves the one it does');
});

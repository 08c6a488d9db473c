// GET /metrics in TorchServe's Prometheus text, counting real predictions, and the metric log files.
// What each metrics_mode serves on /metrics is test/unit/metrics-api.test.ts's, in process.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildMar, buildMnistMar, FIXTURES, MNIST_DIR, startTestServer, tempDir, waitFor, waitReady } from './helpers.js';

t.test('prediction counters, latencies and response classes', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar' } });
  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  for (let i = 0; i < 3; i++) t.equal((await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: seven })).status, 200);
  t.equal((await fetch(`${server.urls.inference}/predictions/mnist/1.0`, { method: 'POST', body: seven })).status, 200);
  t.equal((await fetch(`${server.urls.inference}/predictions/nope`, { method: 'POST' })).status, 404);

  const res = await fetch(`${server.urls.metrics!}/metrics`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  const host = hostname();
  t.match(text, '# HELP ts_inference_requests_total Torchserve prometheus counter metric with unit: Count\n# TYPE ts_inference_requests_total counter\n');
  t.match(text, `ts_inference_requests_total{model_name="mnist",model_version="default",hostname="${host}",} 3.0\n`);
  t.match(text, `ts_inference_requests_total{model_name="mnist",model_version="1.0",hostname="${host}",} 1.0\n`);
  t.match(text, new RegExp(`ts_inference_latency_microseconds\\{model_name="mnist",model_version="default",hostname="${host}",\\} \\d+\\.\\d+`));
  t.match(text, new RegExp(`ts_queue_latency_microseconds\\{model_name="mnist",model_version="default",hostname="${host}",\\} \\d+\\.\\d+`));
  t.match(text, /Requests2XX\{Level="Host",Hostname=".*",\} \d+\.\d+/, "TorchServe's own Postman check");
  t.match(text, `Requests4XX{Level="Host",Hostname="${host}",} 1.0`);
  t.match(text, /HandlerTime\{ModelName="mnist",Level="Model",Hostname=".*",\} \d/, 'handler metrics arrive from the worker');
  t.match(text, '# HELP HandlerTime Torchserve prometheus gauge metric with unit: ms\n', "the unit of TorchServe's metrics.yaml");
  t.match(text, /PredictionTime\{ModelName="mnist",Level="Model",Hostname=".*",\} \d/, 'the worker times every prediction');
  t.match(text, /WorkerThreadTime\{Level="Host",Hostname=".*",\} \d/, "the server's own time on a batch");
  t.match(
    text,
    '# HELP GPUUtilization Torchserve prometheus gauge metric with unit: Percent\n# TYPE GPUUtilization gauge\n',
    'declared families print with no samples, as in TorchServe',
  );

  const filtered = await (await fetch(`${server.urls.metrics!}/metrics?name[]=ts_inference_requests_total`)).text();
  t.notMatch(filtered, 'Requests2XX', 'name[] filters families');
  t.match(filtered, 'ts_inference_requests_total{');
});

const echoMar = (store: string): string => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });

t.test("model_metrics_auto_detect=true: a handler's own metrics, one of each kind of context.metrics, with TorchServe's units and dimensions", async (t) => {
  const server = await startTestServer(t, { prepare: echoMar, properties: { load_models: 'echo.mar', model_metrics_auto_detect: 'true' } });
  t.equal((await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'metrics' })).status, 200);
  const text = await (await fetch(`${server.urls.metrics!}/metrics`)).text();
  const host = hostname();
  const family = (name: string, type: string, unit: string, labels: string, value: string): void => {
    t.match(
      text,
      `# HELP ${name} Torchserve prometheus ${type} metric with unit: ${unit}\n# TYPE ${name} ${type}\n${name}{${labels}Hostname="${host}",} ${value}\n`,
      name,
    );
  };
  family('EchoCalls', 'counter', 'Count', 'ModelName="echo",Level="Model",', '2.0');
  family('EchoWait', 'gauge', 'Seconds', 'ModelName="echo",Level="Model",', '1.5');
  family('EchoBytes', 'gauge', 'Kilobytes', 'ModelName="echo",Level="Model",Stage="reply",', '0.25');
  family('EchoShare', 'gauge', 'Percent', 'ModelName="echo",Level="Model",', '42.0');
  family('EchoErrors', 'counter', 'unit', 'ModelName="echo",Level="Error",', '1.0');
  family('EchoCustom', 'gauge', 'Widgets', 'ModelName="echo",Level="Model",', '7.0');
});

t.test("system metrics every metric_time_interval: host CPU, memory and disk gauges, and each worker's memory in describe", async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar', metric_time_interval: '1' } });
  const text = await (await fetch(`${server.urls.metrics!}/metrics`)).text();
  const host = hostname();
  for (const [name, unit] of [
    ['CPUUtilization', 'Percent'],
    ['MemoryUsed', 'Megabytes'],
    ['MemoryAvailable', 'Megabytes'],
    ['MemoryUtilization', 'Percent'],
    ['DiskUsage', 'Gigabytes'],
    ['DiskUtilization', 'Percent'],
    ['DiskAvailable', 'Gigabytes'],
  ] as const) {
    t.match(
      text,
      new RegExp(
        `# HELP ${name} Torchserve prometheus gauge metric with unit: ${unit}\n# TYPE ${name} gauge\n${name}\\{Level="Host",Hostname="${host}",\\} \\d+(\\.\\d+)?(E\\d+)?\n`,
      ),
      name,
    );
  }
  const used = Number(/^MemoryUsed\{[^}]*\} (\S+)$/m.exec(text)?.[1]);
  t.ok(used > 10, `MemoryUsed is a plausible number of megabytes (${used})`);
  const memoryUsage = async (): Promise<number> => {
    const [d] = (await (await fetch(`${server.urls.management}/models/mnist`)).json()) as Array<{ workers: Array<{ memoryUsage: number }> }>;
    return d!.workers[0]!.memoryUsage;
  };
  // A sample taken as the worker was spawned sees a process with no model yet (4 MB was seen):
  // wait for the worker to be READY, then for a sample of the loaded worker, every second.
  await waitReady(server.urls.management, 'mnist');
  await waitFor(async () => (await memoryUsage()) > 8 * 2 ** 20, 10_000, 'a sample of the loaded worker, in bytes');
  const rss = await memoryUsage();
  t.ok(rss < 2 ** 31, `the worker's resident bytes (${rss})`);
});

t.test('disable_system_metrics=true: no system gauges, memoryUsage stays 0', async (t) => {
  const server = await startTestServer(t, {
    prepare: echoMar,
    properties: { load_models: 'echo.mar', metric_time_interval: '1', disable_system_metrics: 'true' },
  });
  await new Promise((r) => setTimeout(r, 1200));
  t.notMatch(await (await fetch(`${server.urls.metrics!}/metrics`)).text(), /^CPUUtilization\{/m, 'declared, so printed, but never sampled');
  const [d] = (await (await fetch(`${server.urls.management}/models/echo`)).json()) as Array<{ workers: Array<{ memoryUsage: number }> }>;
  t.equal(d!.workers[0]!.memoryUsage, 0);
});

t.test("metrics_mode=log writes ts_metrics.log and model_metrics.log in TorchServe's line formats", async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMnistMar(store),
    properties: { load_models: 'mnist.mar', metrics_mode: 'log', disable_system_metrics: 'true' },
  });
  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  const res = await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: seven });
  t.equal(res.status, 200);
  await server.close();
  const logs = join(server.dir, 'logs');
  const host = hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const stamp = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d,\\d{3} - ';
  const ts = readFileSync(join(logs, 'ts_metrics.log'), 'utf8');
  t.match(
    ts,
    new RegExp(`^${stamp}ts_inference_requests_total\\.Count:1\\.0\\|#model_name:mnist,model_version:default\\|#hostname:${host},timestamp:\\d+$`, 'm'),
  );
  t.match(ts, new RegExp(`^${stamp}Requests2XX\\.Count:1\\.0\\|#Level:Host\\|#hostname:${host},timestamp:\\d+$`, 'm'));
  t.match(ts, new RegExp(`^${stamp}QueueTime\\.Milliseconds:[\\d.E-]+\\|#Level:Host\\|#hostname:${host},timestamp:\\d+$`, 'm'));
  const model = readFileSync(join(logs, 'model_metrics.log'), 'utf8');
  t.match(model, new RegExp(`^${stamp}HandlerTime\\.ms:[\\d.E-]+\\|#ModelName:mnist,Level:Model\\|#hostname:${host},requestID:[\\w-]+,timestamp:\\d+$`, 'm'));
  t.match(
    model,
    new RegExp(`^${stamp}PredictionTime\\.ms:[\\d.E-]+\\|#ModelName:mnist,Level:Model\\|#hostname:${host},requestID:[\\w-]+,timestamp:\\d+$`, 'm'),
  );
});

t.test("metrics_mode=log: a prediction's metric lines are in the files within a second or so, not only at stop (as the access log)", async (t) => {
  const server = await startTestServer(t, {
    prepare: echoMar,
    properties: { load_models: 'echo.mar', metrics_mode: 'log', disable_system_metrics: 'true' },
  });
  t.equal((await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'x' })).status, 200);
  const read = (file: string): string => (existsSync(join(server.dir, 'logs', file)) ? readFileSync(join(server.dir, 'logs', file), 'utf8') : '');
  // Written once a second: 2 s allows for a busy machine; before, nothing came before the stop.
  await waitFor(() => read('model_metrics.log').includes('PredictionTime.ms:'), 2000, "the prediction's model metrics");
  await waitFor(() => read('ts_metrics.log').includes('Requests2XX.Count:1.0'), 2000, "the prediction's server metrics");
  t.pass('both written while the server runs');
});

t.test('METRICS_LOCATION: where the metric logs go; one that cannot be written costs no request', async (t) => {
  const elsewhere = join(tempDir(t), 'metrics-here');
  const server = await startTestServer(t, {
    prepare: echoMar,
    properties: { load_models: 'echo.mar', metrics_mode: 'log', disable_system_metrics: 'true' },
    env: { METRICS_LOCATION: elsewhere },
  });
  t.equal((await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'x' })).status, 200);
  await server.close();
  t.match(readFileSync(join(elsewhere, 'ts_metrics.log'), 'utf8'), 'Requests2XX.Count:1.0');
  t.match(readFileSync(join(elsewhere, 'model_metrics.log'), 'utf8'), 'PredictionTime.ms:');
  t.notOk(existsSync(join(server.dir, 'logs', 'ts_metrics.log')), 'not beside the other logs');

  const file = join(tempDir(t), 'a-file');
  writeFileSync(file, '');
  const log: string[] = [];
  const broken = await startTestServer(t, {
    prepare: echoMar,
    properties: { load_models: 'echo.mar', metrics_mode: 'log', disable_system_metrics: 'true' },
    env: { METRICS_LOCATION: join(file, 'metrics') },
    serverLog: (line) => log.push(line),
  });
  for (let i = 0; i < 2; i++) t.equal((await fetch(`${broken.urls.inference}/predictions/echo`, { method: 'POST', body: 'x' })).status, 200, 'answered');
  t.equal(log.filter((l) => l.includes('metrics log unwritable')).length, 1, 'said once');
});

t.test('metrics_mode=prometheus writes no metric logs; legacy logs all but the three counters it serves', async (t) => {
  const prometheus = await startTestServer(t, { properties: { disable_system_metrics: 'true' } });
  t.equal((await fetch(`${prometheus.urls.inference}/ping`)).status, 200);
  await prometheus.close();
  t.notOk(existsSync(join(prometheus.dir, 'logs', 'ts_metrics.log')));
  const legacy = await startTestServer(t, {
    prepare: echoMar,
    properties: { load_models: 'echo.mar', metrics_mode: 'legacy', disable_system_metrics: 'true' },
  });
  t.equal((await fetch(`${legacy.urls.inference}/predictions/echo`, { method: 'POST', body: 'x' })).status, 200);
  await legacy.close();
  const ts = readFileSync(join(legacy.dir, 'logs', 'ts_metrics.log'), 'utf8');
  t.match(ts, 'Requests2XX.Count:1.0|#Level:Host|#hostname:');
  t.notMatch(ts, 'ts_inference_requests_total', 'served on /metrics instead');
});

t.test("by default a handler's undeclared metrics are dropped, as in TorchServe, with one warning each", async (t) => {
  const log: string[] = [];
  const server = await startTestServer(t, { prepare: echoMar, properties: { load_models: 'echo.mar' }, serverLog: (line) => log.push(line) });
  for (let i = 0; i < 2; i++) t.equal((await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'metrics' })).status, 200);
  const text = await (await fetch(`${server.urls.metrics!}/metrics`)).text();
  t.notMatch(text, 'EchoCalls');
  t.match(text, /PredictionTime\{ModelName="echo",/, 'what the default metrics.yaml declares is kept');
  const warnings = log.filter((l) => l.includes('Dropping model metric EchoCalls'));
  t.equal(warnings.length, 1, 'warned once, not per request');
  t.match(warnings[0], 'declare it under model_metrics, or set model_metrics_auto_detect=true');
});

t.test('metrics_config: the families a metrics.yaml declares, with its types, units and dimension names, and no others', async (t) => {
  const log: string[] = [];
  const server = await startTestServer(t, {
    prepare: (store) => {
      echoMar(store);
      writeFileSync(
        join(store, '..', 'metrics.yaml'),
        [
          'dimensions:',
          '  - &level "Level"',
          'ts_metrics:',
          '  counter:',
          '    - name: Requests2XX',
          '      unit: Count',
          '      dimensions: ["Scope", "Host"]',
          '  histogram:',
          '    - name: QueueTime',
          '      unit: ms',
          '      dimensions: [*level, "Hostname"]',
          '  gauge:',
          '    - name: MyOwnGauge',
          '      unit: Things',
          'model_metrics:',
          '  counter:',
          '    - {name: EchoCalls, unit: Calls, dimensions: ["ModelName", *level]}',
          '  gauge:',
          '    - {name: EchoBytes, unit: kB, dimensions: ["ModelName"]}',
        ].join('\n'),
      );
    },
    properties: { load_models: 'echo.mar', metrics_config: 'metrics.yaml' },
    serverLog: (line) => log.push(line),
  });
  t.equal((await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'metrics' })).status, 200);
  t.equal((await fetch(`${server.urls.inference}/predictions/nope`, { method: 'POST' })).status, 404);
  const text = await (await fetch(`${server.urls.metrics!}/metrics`)).text();
  const host = hostname();
  t.match(text, new RegExp(`Requests2XX\\{Scope="Host",Host="${host}",\\} \\d+\\.0\n`), 'its dimension names, the values in their order');
  t.notMatch(text, 'Requests4XX', 'a server metric it leaves out is not recorded');
  t.notMatch(text, 'ts_inference_requests_total');
  t.match(text, '# HELP QueueTime Torchserve prometheus histogram metric with unit: ms\n# TYPE QueueTime histogram\n');
  t.match(text, `QueueTime_bucket{Level="Host",Hostname="${host}",le="0.075",}`, "the Java client's default buckets");
  t.match(text, new RegExp(`QueueTime_count\\{Level="Host",Hostname="${host}",\\} 1\\.0`));
  t.match(text, '# HELP MyOwnGauge Torchserve prometheus gauge metric with unit: Things\n# TYPE MyOwnGauge gauge\n', 'declared, never recorded: printed empty');
  t.match(
    text,
    `# HELP EchoCalls Torchserve prometheus counter metric with unit: Calls\n# TYPE EchoCalls counter\nEchoCalls{ModelName="echo",Level="Model",Hostname="${host}",} 2.0\n`,
  );
  t.notMatch(text, 'EchoBytes{', 'three dimension values for a family of two: dropped');
  t.notMatch(text, 'EchoWait');
  t.notMatch(text, 'PredictionTime');
  t.match(text, '# TYPE ts_queue_size gauge', "tsserve's own metrics stay");
  t.ok(
    log.some((l) => l.includes('Dropping model metric EchoBytes: it came with dimensions ModelName, Level, Stage, metrics_config declares ModelName')),
    'the mismatch is named',
  );
});

t.test('a metrics_config the server cannot use stops the start with the reason', async (t) => {
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['missing', undefined, /metrics_config .*missing\.yaml: file not found/],
    ['not YAML', 'ts_metrics: [unclosed', /not valid YAML/],
    ['a type that does not exist', 'ts_metrics:\n  summary:\n    - name: X', /ts_metrics\.summary: unknown metric type/],
    ['a bad name', 'model_metrics:\n  gauge:\n    - name: "has space"', /name must be a Prometheus metric name/],
    [
      'dimensions tsserve cannot fill',
      'ts_metrics:\n  counter:\n    - {name: Requests2XX, dimensions: [Level]}',
      /Requests2XX needs 2 dimensions \(TorchServe's default: Level, Hostname\), the file gives 1/,
    ],
    ['Hostname on a model metric', 'model_metrics:\n  gauge:\n    - {name: M, dimensions: [Hostname]}', /M: Hostname is added to model metrics/],
    ["tsserve's own metric", 'ts_metrics:\n  gauge:\n    - {name: ts_queue_size}', /ts_queue_size is tsserve's own metric/],
    ['a name twice', 'ts_metrics:\n  gauge:\n    - {name: A}\nmodel_metrics:\n  counter:\n    - {name: A}', /A is declared twice/],
  ];
  for (const [what, yaml, message] of cases) {
    const file = what === 'missing' ? 'missing.yaml' : 'metrics.yaml';
    await t.rejects(
      startTestServer(t, {
        prepare: (store) => yaml !== undefined && writeFileSync(join(store, '..', file), yaml),
        properties: { metrics_config: file },
      }),
      { message },
      what,
    );
  }
});

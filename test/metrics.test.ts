// GET /metrics in TorchServe's Prometheus text, counting real predictions.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildMnistMar, MNIST_DIR, startTestServer } from './helpers.js';

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

  const filtered = await (await fetch(`${server.urls.metrics!}/metrics?name[]=ts_inference_requests_total`)).text();
  t.notMatch(filtered, 'Requests2XX', 'name[] filters families');
  t.match(filtered, 'ts_inference_requests_total{');
});

t.test('metrics_mode=legacy serves the three ts_* counters only, log serves nothing', async (t) => {
  const legacy = await startTestServer(t, { properties: { metrics_mode: 'legacy' } });
  const text = await (await fetch(`${legacy.urls.metrics!}/metrics`)).text();
  t.match(text, '# TYPE ts_inference_requests_total counter');
  t.notMatch(text, 'Requests2XX');
  const log = await startTestServer(t, { properties: { metrics_mode: 'log' } });
  t.equal(await (await fetch(`${log.urls.metrics!}/metrics`)).text(), '');
});

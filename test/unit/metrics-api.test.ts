// GET /metrics in process: TorchServe's Prometheus text for the front end's own counters (requests
// and latencies by model and version), the name[] filter, and what each metrics_mode serves.
// Response classes count requests that came over a socket, so they are not counted here. Metrics that come from a real handler and the metric log files are
// test/metrics.test.ts's.
import { hostname } from 'node:os';
import t from 'tap';
import { inProcessServer } from './in-process.js';

t.test('prediction counters by model and version, latencies, declared families with no samples, name[]', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'], properties: { load_models: 'echo.mar' } });
  for (const url of ['/predictions/echo', '/predictions/echo', '/predictions/echo/1.0', '/predictions/nope']) {
    await server.inference({ method: 'POST', url, payload: 'x' });
  }
  const res = await server.metrics({ method: 'GET', url: '/metrics' });
  t.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  const host = hostname();
  t.match(res.body, '# HELP ts_inference_requests_total Torchserve prometheus counter metric with unit: Count\n# TYPE ts_inference_requests_total counter\n');
  t.match(res.body, `ts_inference_requests_total{model_name="echo",model_version="default",hostname="${host}",} 2.0\n`);
  t.match(res.body, `ts_inference_requests_total{model_name="echo",model_version="1.0",hostname="${host}",} 1.0\n`);
  t.match(res.body, new RegExp(`ts_inference_latency_microseconds\\{model_name="echo",model_version="default",hostname="${host}",\\} \\d+\\.\\d+`));
  t.match(
    res.body,
    '# HELP GPUUtilization Torchserve prometheus gauge metric with unit: Percent\n# TYPE GPUUtilization gauge\n',
    'declared families print with no samples',
  );
  const filtered = (await server.metrics({ method: 'GET', url: '/metrics?name[]=ts_inference_requests_total' })).body;
  t.notMatch(filtered, 'GPUUtilization', 'name[] filters families');
  t.match(filtered, 'ts_inference_requests_total{');
});

t.test('metrics_mode=legacy serves the three ts_* counters only, log serves nothing', async (t) => {
  const legacy = await inProcessServer(t, { properties: { metrics_mode: 'legacy' } });
  const text = (await legacy.metrics({ method: 'GET', url: '/metrics' })).body;
  t.match(text, '# TYPE ts_inference_requests_total counter');
  t.notMatch(text, 'Requests2XX');
  const log = await inProcessServer(t, { properties: { metrics_mode: 'log' } });
  t.equal((await log.metrics({ method: 'GET', url: '/metrics' })).body, '');
});

// deploy/monitoring's rules and dashboard in Debian's Prometheus, scraping a real tsserve under a
// bounded load: the rules evaluate without error, every query whose metrics have samples answers,
// and a full queue raises its alerts. A deployment's check (a Prometheus, its scrapes and rule
// evaluations every second, 30 s of it), so in the acceptance tier; test/deploy/monitoring.test.ts checks
// the files themselves, with promtool and against a real tsserve's /metrics.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { stringify } from 'yaml';
import { predict, register, serve } from '../echo-model.js';
import { freePort, metric, tempDir, waitFor } from '../helpers.js';
import { alertNames, asPrometheusGets, dashboard, metricNames, mnistServer, queries, RULES, SEVEN, servedNames } from '../monitoring.js';

/** Debian's Prometheus scraping `target` every second with the alert rules, on a port of its own; stopped at the test's end. */
async function prometheus(t: Parameters<typeof tempDir>[0], target: string): Promise<string> {
  const dir = tempDir(t, 'tsserve-prometheus-');
  const config = {
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [RULES],
    scrape_configs: [{ job_name: 'tsserve', static_configs: [{ targets: [target] }] }],
  };
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
  const url = `http://127.0.0.1:${await freePort()}`;
  const child = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=${new URL(url).host}`],
    { stdio: 'ignore' },
  );
  t.teardown(() => {
    child.kill();
  });
  await waitFor(async () => (await fetch(`${url}/-/ready`).catch(() => undefined))?.status === 200, 30_000, 'Prometheus ready');
  return url;
}

async function query(prometheusUrl: string, expr: string): Promise<{ status: string; error?: string; data?: { result: Array<{ value: [number, string] }> } }> {
  return (await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(expr)}`)).json() as Promise<{ status: string }>;
}

t.test('a real Prometheus scraping tsserve under load: the rules evaluate, and every query with samples answers', async (t) => {
  const server = await mnistServer(t);
  const url = await prometheus(t, new URL(server.urls.metrics!).host);
  await waitFor(async () => ((await query(url, 'ts_workers_ready')).data?.result.length ?? 0) > 0, 30_000, 'a first scrape');
  // Four clients for 8 s or 4,000 predictions, whichever first, and a prediction of no model now and then (4XX).
  const until = Date.now() + 8_000;
  let sent = 0;
  const statuses: number[] = [];
  const client = async (): Promise<void> => {
    while (Date.now() < until && sent < 4_000) {
      const res = await fetch(`${server.urls.inference}/predictions/${++sent % 100 === 0 ? 'nope' : 'mnist'}`, { method: 'POST', body: SEVEN });
      await res.arrayBuffer();
      statuses.push(res.status);
    }
  };
  await Promise.all([client(), client(), client(), client()]);
  t.same([...new Set(statuses)].sort(), sent >= 100 ? [200, 404] : [200], `${sent} predictions answered`);
  // Two scrapes after the load, so that every rate has its last samples.
  await new Promise((resolve) => setTimeout(resolve, 2_500));

  const { sampled } = servedNames(await (await fetch(`${server.urls.metrics}/metrics`)).text());
  for (const { panel, expr } of queries(dashboard())) {
    const answer = await query(url, asPrometheusGets(expr).replaceAll('[1m]', '[30s]'));
    t.equal(answer.status, 'success', `${panel}: ${answer.error ?? expr}`);
    if (metricNames(expr).every((n) => sampled.has(n))) {
      t.ok((answer.data?.result.length ?? 0) > 0, `${panel}: answers with data: ${expr}`);
    }
  }
  const rules = (await (await fetch(`${url}/api/v1/rules`)).json()) as {
    data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> };
  };
  const evaluated = rules.data.groups.flatMap((g) => g.rules);
  t.same(evaluated.map((r) => r.name).sort(), alertNames().sort(), 'every rule loaded');
  for (const rule of evaluated) t.equal(rule.health, 'ok', `${rule.name} evaluates: ${rule.lastError ?? ''}`);
});

t.test('in a real Prometheus, a full queue and its refusals raise their alerts (pending), and a healthy model raises none', async (t) => {
  const server = await serve(t, { job_queue_size: '4' });
  await register(t, server, 'full', { initial_workers: 1 });
  await register(t, server, 'healthy', { initial_workers: 1 });
  const url = await prometheus(t, new URL(server.urls.metrics!).host);
  await waitFor(async () => ((await query(url, 'ts_workers_ready{model_name="full"}')).data?.result.length ?? 0) > 0, 30_000, 'a first scrape');
  t.equal((await predict(server, 'healthy', 'hello')).status, 200);
  // The one worker busy for 12 s, its queue of 4 full behind it, and three more refused.
  const held = [predict(server, 'full', 'sleep:12000')];
  await waitFor(
    async () => (await metric(server, 'ts_inference_requests_total', 'full')) === 1 && (await metric(server, 'ts_queue_size', 'full')) === 0,
    5_000,
    'the first with the worker',
  );
  for (const body of ['a', 'b', 'c', 'd']) held.push(predict(server, 'full', body));
  await waitFor(async () => (await metric(server, 'ts_queue_size', 'full')) === 4, 5_000, 'a full queue');
  // rate() counts a counter's increase from its first sample: the counters of refusals (and of
  // 5XX) appear at the first refusal, so the ones after it are those an alert sees.
  t.equal((await predict(server, 'full', 'e')).status, 503, 'refused: the queue is full');
  await waitFor(async () => ((await query(url, 'ts_requests_rejected_total{model_name="full"}')).data?.result.length ?? 0) > 0, 5_000, 'a refusal scraped');
  t.same([(await predict(server, 'full', 'f')).status, (await predict(server, 'full', 'g')).status], [503, 503], 'and again');

  const pending = async (): Promise<string[]> => {
    const answer = await query(url, 'ALERTS{alertstate="pending"}');
    return (answer.data?.result ?? []).map((r) => {
      const labels = (r as unknown as { metric: Record<string, string> }).metric;
      return `${labels.alertname} ${labels.model_name ?? labels.instance}`;
    });
  };
  const expected = ['TsserveModelErrorRatioHigh full', 'TsserveQueueNearFull full', `TsserveServerErrorRatioHigh ${new URL(server.urls.metrics!).host}`];
  // Prometheus scrapes and evaluates every second; the assertion below says what did not come.
  await waitFor(
    async () => {
      const now = await pending();
      return expected.every((a) => now.includes(a));
    },
    8_000,
    'the alerts pending',
  ).catch(() => undefined);
  const raised = (await pending()).sort();
  t.same(raised, expected, 'the queue near full and the error ratios, for the full model and its server; nothing for the healthy model');
  t.same(
    (await Promise.all(held)).map((r) => r.status),
    [200, 200, 200, 200, 200],
    'what the queue held is answered',
  );
});

// What deploy/monitoring ships, checked as an operator's tools check it: Debian's promtool checks the
// alert rules and the Prometheus configuration and runs the rules' unit tests (series that make each
// alert fire and series that must not); the Grafana dashboard's queries are valid PromQL (promtool
// again) and ask only for metrics a real tsserve serves on its /metrics; and Debian's Prometheus,
// scraping a real tsserve under a bounded load, evaluates the rules without error and answers every
// query whose metrics have samples.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import t from 'tap';
import { parse, stringify } from 'yaml';
import { predict, register, serve } from './echo-model.js';
import { buildMnistMar, freePort, metric, MNIST_DIR, ROOT, startTestServer, type TestServer, tempDir, waitFor } from './helpers.js';

const MONITORING = join(ROOT, 'deploy', 'monitoring');
const RULES = join(MONITORING, 'tsserve-alerts.yaml');
const RULE_TESTS = join(MONITORING, 'tsserve-alerts.test.yaml');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}
interface RuleTest {
  name: string;
  alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }>;
}
interface Panel {
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: Array<{ expr: string; datasource: { uid: string } }>;
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; definition?: string }> };
}

function promtool(...args: string[]): { status: number | null; out: string } {
  const run = spawnSync('promtool', args, { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
}

const rules = (): Rule[] => (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);
const alertNames = (): string[] => rules().flatMap((r) => (r.alert ? [r.alert] : []));
const dashboard = (): Dashboard => JSON.parse(readFileSync(join(MONITORING, 'grafana-dashboard.json'), 'utf8')) as Dashboard;
const queries = (d: Dashboard): Array<{ panel: string; expr: string }> =>
  d.panels.flatMap((p) => (p.targets ?? []).map((target) => ({ panel: p.title, expr: target.expr })));

/** A dashboard query as Prometheus receives it once Grafana has put in its variables. */
function asPrometheusGets(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$model_name', '.+').replaceAll('$instance', '.+');
}

/**
 * The metric names a PromQL expression reads: its identifiers once strings, label matchers, ranges
 * and label lists are taken out, less functions (an identifier before "(") and keywords.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const names = [...bare.matchAll(/(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()/g)].map((m) => m[1]!);
  return [...new Set(names.filter((n) => !['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan'].includes(n.toLowerCase())))];
}

t.test('metricNames reads the metric names of an expression, not its functions, labels or keywords', async (t) => {
  t.same(metricNames('sum by (model_name, le) (rate(ts_request_seconds_bucket{model_name=~"$model_name"}[$__rate_interval])) > 1'), [
    'ts_request_seconds_bucket',
  ]);
  t.same(metricNames('a / on (x) group_left (y) b_total or 0 * c:rate5m unless d offset 5m > bool 1e6'), ['a', 'b_total', 'c:rate5m', 'd']);
});

t.test('promtool: the alert rules and the Prometheus configuration are valid', async (t) => {
  const checked = promtool('check', 'rules', RULES);
  t.equal(checked.status, 0, checked.out);
  t.match(checked.out, `SUCCESS: ${alertNames().length} rules found`);
  const config = promtool('check', 'config', join(MONITORING, 'prometheus.yml'));
  t.equal(config.status, 0, config.out);
  t.match(config.out, 'SUCCESS: 1 rule files found', 'the configuration loads the rules');
});

t.test('promtool test rules: every alert fires on its series, and stays quiet on the others', async (t) => {
  const run = promtool('test', 'rules', RULE_TESTS);
  t.equal(run.status, 0, run.out);
  t.match(run.out, 'SUCCESS');
  const cases = (parse(readFileSync(RULE_TESTS, 'utf8')) as { tests: RuleTest[] }).tests.flatMap((c) => c.alert_rule_test);
  t.same(alertNames().sort(), [
    'TsserveModelErrorRatioHigh',
    'TsserveModelNoReadyWorker',
    'TsserveP99LatencyHigh',
    'TsserveQueueNearFull',
    'TsserveServerErrorRatioHigh',
  ]);
  for (const alert of alertNames()) {
    const mine = cases.filter((c) => c.alertname === alert);
    t.ok(
      mine.some((c) => c.exp_alerts.length > 0),
      `${alert}: a case where it fires`,
    );
    t.ok(
      mine.some((c) => c.exp_alerts.length === 0),
      `${alert}: a case where it does not`,
    );
  }
});

t.test('the rule tests have teeth: an alert that never fires, or fires at once, fails them', async (t) => {
  const dir = tempDir(t, 'tsserve-rules-');
  copyFileSync(RULE_TESTS, join(dir, 'tsserve-alerts.test.yaml'));
  const original = parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Array<Rule & { for?: string }> }> };
  for (const alert of alertNames()) {
    for (const [what, change] of [
      ['never fires', (r: Rule & { for?: string }) => Object.assign(r, { expr: 'vector(0) > 1' })],
      ['fires without waiting', (r: Rule & { for?: string }) => Object.assign(r, { for: '0s' })],
    ] as const) {
      const broken = structuredClone(original);
      change(broken.groups.flatMap((g) => g.rules).find((r) => r.alert === alert)!);
      writeFileSync(join(dir, 'tsserve-alerts.yaml'), stringify(broken));
      const run = promtool('test', 'rules', join(dir, 'tsserve-alerts.test.yaml'));
      t.not(run.status, 0, `${alert} when it ${what}: the tests fail`);
      t.match(run.out, `alertname: ${alert}`, 'on that alert');
    }
  }
});

t.test("docs/monitoring.md's command makes a PrometheusRule of the rules that the Prometheus Operator's schema takes", async (t) => {
  const command = /^ {2}(\{ printf 'apiVersion: monitoring\.coreos\.com\/v1.*) \| kubectl apply -f -$/m.exec(
    readFileSync(join(ROOT, 'docs', 'monitoring.md'), 'utf8'),
  )?.[1];
  t.ok(command, 'the command is in the docs');
  const made = parse(execFileSync('bash', ['-c', command!], { cwd: ROOT, encoding: 'utf8' })) as { kind: string; spec: unknown };
  t.equal(made.kind, 'PrometheusRule');
  t.same(made.spec, parse(readFileSync(RULES, 'utf8')), 'its spec: the rules as they are');
  t.doesNotThrow(() => new PrometheusRule(made as never).validate(), "valid against the operator's schema");
  t.throws(() => new PrometheusRule({ ...made, spec: { groups: 'tsserve' } } as never).validate(), 'which tells a wrong one');
});

t.test('the Grafana dashboard: per model, every query valid PromQL', async (t) => {
  const d = dashboard();
  t.equal(d.uid, 'tsserve-models');
  t.same(
    d.templating.list.map((v) => [v.name, v.type]),
    [
      ['datasource', 'datasource'],
      ['instance', 'query'],
      ['model_name', 'query'],
    ],
    'a Prometheus to choose, then servers and models',
  );
  const charts = d.panels.filter((p) => p.type !== 'row');
  const titles = charts.map((p) => p.title);
  for (const title of ['Throughput', 'Errors', 'Request latency p50 / p99', 'Stages p50', 'Stages p99', 'Queue', 'Workers', 'Batch size', 'Memory']) {
    t.ok(titles.includes(title), `a panel "${title}"`);
  }
  for (const panel of charts) {
    t.ok((panel.targets ?? []).length > 0, `${panel.title}: has queries`);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's own syntax, the dashboard's datasource variable
    t.equal(panel.datasource?.uid, '${datasource}', `${panel.title}: on the chosen Prometheus`);
  }
  for (const { panel, expr } of queries(d)) {
    t.match(expr, /\{[^}]*instance=~"\$instance"/, `${panel}: for the chosen servers: ${expr}`);
    if (!/Requests[45]XX|Memory/.test(expr)) t.match(expr, /model_name=~"\$model_name"/, `${panel}: for the chosen models: ${expr}`);
  }
  // promtool parses PromQL as Prometheus does: each query as a recording rule.
  const dir = tempDir(t, 'tsserve-dashboard-');
  const file = join(dir, 'queries.yaml');
  const records = queries(d).map(({ expr }, i) => ({ record: `dashboard:query_${i}`, expr: asPrometheusGets(expr) }));
  writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules: records }] }));
  const checked = promtool('check', 'rules', file);
  t.equal(checked.status, 0, checked.out);
  t.match(checked.out, `SUCCESS: ${records.length} rules found`);
});

/** The names /metrics declares (every family prints its TYPE line, a counter not yet counted too; a histogram's series add suffixes), and those with samples. */
function servedNames(text: string): { served: Set<string>; sampled: Set<string> } {
  const served = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    served.add(name!);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) served.add(`${name}${suffix}`);
  }
  const sampled = new Set([...text.matchAll(/^([a-zA-Z_:][\w:]*)\{/gm)].map((m) => m[1]!));
  return { served, sampled };
}

const mnistServer = (t: Parameters<typeof startTestServer>[0]): Promise<TestServer> =>
  startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar' } });
const SEVEN = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));

t.test("the dashboard's and the rules' metric names are those a real tsserve serves", async (t) => {
  const server = await mnistServer(t);
  t.equal((await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: SEVEN })).status, 200);
  const { served } = servedNames(await (await fetch(`${server.urls.metrics}/metrics`)).text());
  t.ok(served.has('ts_workers_ready') && served.has('Requests5XX'), 'the scrape has families');
  const named = [
    ...queries(dashboard()).map((q) => ({ where: `dashboard: ${q.panel}`, expr: q.expr })),
    ...dashboard().templating.list.flatMap((v) =>
      v.definition ? [{ where: `dashboard: variable ${v.name}`, expr: v.definition.replace(/^label_values\((.*), \w+\)$/, '$1') }] : [],
    ),
    ...rules().map((r) => ({ where: `rule ${r.alert ?? r.record}`, expr: r.expr })),
  ];
  for (const { where, expr } of named) {
    const names = metricNames(expr);
    t.ok(names.length > 0, `${where} reads a metric`);
    const unknown = names.filter((n) => !served.has(n));
    t.same(unknown, [], `${where}: ${names.join(', ')}`);
  }
});

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

// What deploy/monitoring ships, checked as an operator's tools check it: Debian's promtool checks the
// alert rules and the Prometheus configuration and runs the rules' unit tests (series that make each
// alert fire and series that must not); the Grafana dashboard's queries are valid PromQL (promtool
// again) and ask only for metrics a real tsserve serves on its /metrics; and Debian's Prometheus,
// scraping a real tsserve under a bounded load, evaluates the rules without error and answers every
// query whose metrics have samples (test/acceptance/prometheus.test.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import t from 'tap';
import { parse, stringify } from 'yaml';
import { ROOT, tempDir } from '../helpers.js';
import {
  alertNames,
  asPrometheusGets,
  dashboard,
  metricNames,
  MONITORING,
  mnistServer,
  queries,
  type Rule,
  RULE_TESTS,
  RULES,
  type RuleTest,
  rules,
  SEVEN,
  servedNames,
} from '../monitoring.js';

function promtool(...args: string[]): { status: number | null; out: string } {
  const run = spawnSync('promtool', args, { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
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

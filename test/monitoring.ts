/**
 * What deploy/monitoring ships, read as its tests read it: the alert rules, the Grafana dashboard's
 * queries, the metric names a PromQL expression reads and those a real tsserve's /metrics serves.
 * Shared by test/deploy/monitoring.test.ts (the files checked, against a real tsserve) and
 * test/acceptance/prometheus.test.ts (a real Prometheus scraping one).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { parse } from 'yaml';
import { buildMnistMar, MNIST_DIR, ROOT, startTestServer, type TestServer } from './helpers.js';

export const MONITORING = join(ROOT, 'deploy', 'monitoring');
export const RULES = join(MONITORING, 'tsserve-alerts.yaml');
export const RULE_TESTS = join(MONITORING, 'tsserve-alerts.test.yaml');

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}
export interface RuleTest {
  name: string;
  alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }>;
}
export interface Panel {
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: Array<{ expr: string; datasource: { uid: string } }>;
}
export interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; definition?: string }> };
}

export const rules = (): Rule[] => (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);
export const alertNames = (): string[] => rules().flatMap((r) => (r.alert ? [r.alert] : []));
export const dashboard = (): Dashboard => JSON.parse(readFileSync(join(MONITORING, 'grafana-dashboard.json'), 'utf8')) as Dashboard;
export const queries = (d: Dashboard): Array<{ panel: string; expr: string }> =>
  d.panels.flatMap((p) => (p.targets ?? []).map((target) => ({ panel: p.title, expr: target.expr })));

/** A dashboard query as Prometheus receives it once Grafana has put in its variables. */
export function asPrometheusGets(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$model_name', '.+').replaceAll('$instance', '.+');
}

/**
 * The metric names a PromQL expression reads: its identifiers once strings, label matchers, ranges
 * and label lists are taken out, less functions (an identifier before "(") and keywords.
 */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const names = [...bare.matchAll(/(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()/g)].map((m) => m[1]!);
  return [...new Set(names.filter((n) => !['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan'].includes(n.toLowerCase())))];
}

/** The names /metrics declares (every family prints its TYPE line, a counter not yet counted too; a histogram's series add suffixes), and those with samples. */
export function servedNames(text: string): { served: Set<string>; sampled: Set<string> } {
  const served = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    served.add(name!);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) served.add(`${name}${suffix}`);
  }
  const sampled = new Set([...text.matchAll(/^([a-zA-Z_:][\w:]*)\{/gm)].map((m) => m[1]!));
  return { served, sampled };
}

export const mnistServer = (t: Test): Promise<TestServer> =>
  startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar' } });
export const SEVEN = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));

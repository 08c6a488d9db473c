/**
 * @module metrics/definitions
 * Which metrics exist, as TorchServe's metrics.yaml says: `ts_metrics` (the server's) and
 * `model_metrics` (the handlers'), each a list of counters, gauges and histograms with a unit and
 * dimension names. Without `metrics_config` the server uses TorchServe's default file, written
 * here as data; with it, the file is read once at start, and a server metric it leaves out is not
 * recorded at all.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../config/server-config.js';
import { isRecord } from '../is-record.js';

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricDefinition {
  readonly name: string;
  readonly type: MetricType;
  readonly unit: string;
  /** Label names in order; a model metric also gets `Hostname` after them. */
  readonly dimensions: readonly string[];
}

export interface MetricDefinitions {
  readonly server: readonly MetricDefinition[];
  readonly model: readonly MetricDefinition[];
}

const TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram'];
const HOST = ['Level', 'Hostname'];
const MODEL_VERSION_HOST = ['model_name', 'model_version', 'hostname'];
const GPU = ['Level', 'DeviceId', 'Hostname'];

/**
 * Server metrics tsserve records, and how many dimension values it gives each: a metrics.yaml
 * may rename their dimensions, not change how many there are.
 */
export const RECORDED_SERVER_METRICS: Readonly<Record<string, number>> = {
  Requests2XX: 2,
  Requests4XX: 2,
  Requests5XX: 2,
  ts_inference_requests_total: 3,
  ts_inference_latency_microseconds: 3,
  ts_queue_latency_microseconds: 3,
  QueueTime: 2,
  WorkerThreadTime: 2,
  WorkerLoadTime: 3,
  CPUUtilization: 2,
  MemoryUsed: 2,
  MemoryAvailable: 2,
  MemoryUtilization: 2,
  DiskUsage: 2,
  DiskUtilization: 2,
  DiskAvailable: 2,
};

/** tsserve's own per-model metrics, always recorded; a metrics.yaml may not declare these names. */
export const OWN_METRICS = [
  'ts_queue_size',
  'ts_queue_remaining_capacity',
  'ts_workers_ready',
  'ts_batch_size',
  'ts_requests_rejected_total',
  'ts_response_timeouts_total',
  'ts_worker_restarts_total',
  'ts_worker_scale_ups_total',
  'ts_worker_scale_downs_total',
  'ts_worker_scale_limited_total',
  'ts_worker_start_milliseconds',
];

function metric(name: string, type: MetricType, unit: string, dimensions: readonly string[]): MetricDefinition {
  return { name, type, unit, dimensions };
}

/** TorchServe's ts/configs/metrics.yaml. */
export const DEFAULT_METRICS: MetricDefinitions = {
  server: [
    metric('Requests2XX', 'counter', 'Count', HOST),
    metric('Requests4XX', 'counter', 'Count', HOST),
    metric('Requests5XX', 'counter', 'Count', HOST),
    metric('ts_inference_requests_total', 'counter', 'Count', MODEL_VERSION_HOST),
    metric('ts_inference_latency_microseconds', 'counter', 'Microseconds', MODEL_VERSION_HOST),
    metric('ts_queue_latency_microseconds', 'counter', 'Microseconds', MODEL_VERSION_HOST),
    metric('OpenSessions', 'counter', 'Count', ['hostname']),
    metric('QueueTime', 'gauge', 'Milliseconds', HOST),
    metric('WorkerThreadTime', 'gauge', 'Milliseconds', HOST),
    metric('WorkerLoadTime', 'gauge', 'Milliseconds', ['WorkerName', ...HOST]),
    metric('CPUUtilization', 'gauge', 'Percent', HOST),
    metric('MemoryUsed', 'gauge', 'Megabytes', HOST),
    metric('MemoryAvailable', 'gauge', 'Megabytes', HOST),
    metric('MemoryUtilization', 'gauge', 'Percent', HOST),
    metric('DiskUsage', 'gauge', 'Gigabytes', HOST),
    metric('DiskUtilization', 'gauge', 'Percent', HOST),
    metric('DiskAvailable', 'gauge', 'Gigabytes', HOST),
    metric('GPUMemoryUtilization', 'gauge', 'Percent', GPU),
    metric('GPUMemoryUsed', 'gauge', 'Megabytes', GPU),
    metric('GPUUtilization', 'gauge', 'Percent', GPU),
  ],
  model: [metric('HandlerTime', 'gauge', 'ms', ['ModelName', 'Level']), metric('PredictionTime', 'gauge', 'ms', ['ModelName', 'Level'])],
};

/** The definitions in a metrics.yaml; anything it gets wrong stops the start with its reason. */
export async function readMetricsConfig(file: string): Promise<MetricDefinitions> {
  const fail = (reason: string): never => {
    throw new ConfigError(`metrics_config ${file}: ${reason}`);
  };
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => fail(err.code === 'ENOENT' ? 'file not found' : err.message));
  const { parse } = await import('yaml');
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    fail(`not valid YAML: ${(err as Error).message}`);
  }
  if (!isRecord(doc)) return fail('expected a mapping with ts_metrics and model_metrics');
  const definitions = { server: section(doc, 'ts_metrics', fail), model: section(doc, 'model_metrics', fail) };
  checkNames(definitions, fail);
  return definitions;
}

function section(doc: Record<string, unknown>, key: string, fail: (reason: string) => never): MetricDefinition[] {
  const value = doc[key];
  if (value === undefined || value === null) return [];
  if (!isRecord(value)) return fail(`${key} must map counter, gauge and histogram to lists of metrics`);
  return Object.entries(value).flatMap(([type, list]) => {
    if (!TYPES.includes(type as MetricType)) return fail(`${key}.${type}: unknown metric type (counter, gauge or histogram)`);
    if (list === null) return [];
    if (!Array.isArray(list)) return fail(`${key}.${type} must be a list of metrics`);
    return list.map((entry, i) => definition(entry, type as MetricType, `${key}.${type}[${i}]`, fail));
  });
}

function definition(entry: unknown, type: MetricType, where: string, fail: (reason: string) => never): MetricDefinition {
  if (!isRecord(entry)) return fail(`${where} must be a mapping with name, unit and dimensions`);
  const { name, unit = '', dimensions = [] } = entry;
  if (typeof name !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) {
    return fail(`${where}: name must be a Prometheus metric name (letters, digits, _ and :), got ${JSON.stringify(name)}`);
  }
  if (typeof unit !== 'string') return fail(`${where} (${name}): unit must be a string`);
  if (!Array.isArray(dimensions) || !dimensions.every((d) => typeof d === 'string' && /^[a-zA-Z_][a-zA-Z0-9_]*$/.test(d))) {
    return fail(`${where} (${name}): dimensions must be a list of label names`);
  }
  return metric(name, type, unit, dimensions as string[]);
}

/** Names unique across both sections, none of tsserve's own, and as many dimensions as tsserve records. */
function checkNames(definitions: MetricDefinitions, fail: (reason: string) => never): void {
  const seen = new Set<string>();
  for (const d of [...definitions.server, ...definitions.model]) {
    if (seen.has(d.name)) fail(`${d.name} is declared twice`);
    if (OWN_METRICS.includes(d.name)) fail(`${d.name} is tsserve's own metric and cannot be declared`);
    seen.add(d.name);
  }
  for (const d of definitions.server) {
    const wanted = RECORDED_SERVER_METRICS[d.name];
    if (wanted !== undefined && d.dimensions.length !== wanted) {
      fail(
        `${d.name} needs ${wanted} dimensions (TorchServe's default: ${DEFAULT_METRICS.server.find((m) => m.name === d.name)!.dimensions.join(', ')}), the file gives ${d.dimensions.length}`,
      );
    }
  }
  for (const d of definitions.model) {
    if (d.dimensions.includes('Hostname')) fail(`${d.name}: Hostname is added to model metrics; leave it out of their dimensions`);
  }
}

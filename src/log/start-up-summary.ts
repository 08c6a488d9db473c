/**
 * @module log/start-up-summary
 * What the server runs with, written once at start to the server log, as TorchServe writes its
 * configuration ("Torchserve version: ...", "Config file: ...", "Inference address: ...",
 * "Model Store: ..."): the first thing an operator reads when a server does not do what was
 * meant. In the text layout a line per entry follows the record, as in TorchServe's ts_log.log;
 * in JSON it is the record's `summary` object, one key per entry.
 */
import { availableParallelism, tmpdir } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { startupWorkers, type ServerConfig } from '../config/server-config.js';

/** The record's message; its entries are its `summary` field. */
export const SUMMARY_MESSAGE = 'Start-up configuration';

/** Each entry's key in JSON and its label in the text layout (TorchServe's where it has one). */
export const SUMMARY_LABELS = {
  tsserveVersion: 'tsserve version',
  nodeVersion: 'Node.js version',
  currentDirectory: 'Current directory',
  tempDirectory: 'Temp directory',
  numberOfCpus: 'Number of CPUs',
  maxHeapSize: 'Max heap size',
  configFile: 'Config file',
  inferenceAddress: 'Inference address',
  managementAddress: 'Management address',
  metricsAddress: 'Metrics address',
  grpcInferenceAddress: 'gRPC inference address',
  grpcManagementAddress: 'gRPC management address',
  kserveAddresses: 'KServe addresses',
  modelStore: 'Model Store',
  initialModels: 'Initial Models',
  logDir: 'Log dir',
  logFormat: 'Log format',
  metricsDir: 'Metrics dir',
  metricsMode: 'Metrics mode',
  enableMetricsApi: 'Enable metrics API',
  disableSystemMetrics: 'Disable system metrics',
  defaultWorkersPerModel: 'Default workers per model',
  maxWorkersPerModel: 'Max workers per model',
  maxRequestSize: 'Maximum Request Size',
  maxResponseSize: 'Maximum Response Size',
  allowedUrls: 'Allowed Urls',
  blacklistEnvVars: 'Blacklist Regex',
  modelApiEnabled: 'Model API enabled',
  tokenAuthorization: 'Token authorization',
  configSnapshots: 'Config snapshots',
} as const;

export type StartUpSummary = { readonly [K in keyof typeof SUMMARY_LABELS]?: string | number | boolean };

/** The summary of `config`, for tsserve `version` (given: the log's modules do not read package.json). */
export function startUpSummary(config: ServerConfig, version: string): StartUpSummary {
  const { grpcInference, grpcManagement, kserve } = config;
  return {
    tsserveVersion: version,
    nodeVersion: process.version,
    currentDirectory: process.cwd(),
    tempDirectory: tmpdir(),
    numberOfCpus: availableParallelism(),
    maxHeapSize: `${Math.round(getHeapStatistics().heap_size_limit / 1024 / 1024)} M`,
    configFile: config.configFile ?? 'N/A',
    inferenceAddress: config.inferenceAddress.raw,
    managementAddress: config.managementAddress.raw,
    metricsAddress: config.metricsAddress.raw,
    grpcInferenceAddress: `${grpcInference.host}:${grpcInference.port}`,
    grpcManagementAddress: `${grpcManagement.host}:${grpcManagement.port}`,
    ...(kserve ? { kserveAddresses: `${kserve.http.raw}, gRPC ${kserve.grpc.host}:${kserve.grpc.port}` } : {}),
    modelStore: config.modelStore ?? 'N/A',
    initialModels: initialModels(config),
    logDir: config.logLocation,
    logFormat: config.logFormat,
    metricsDir: config.metricsLocation,
    metricsMode: config.metricsMode,
    enableMetricsApi: config.enableMetricsApi,
    disableSystemMetrics: config.disableSystemMetrics,
    defaultWorkersPerModel: startupWorkers(config),
    maxWorkersPerModel: config.maxWorkersPerModel,
    maxRequestSize: config.maxRequestSize,
    maxResponseSize: config.maxResponseSize,
    allowedUrls: config.allowedUrls.map((r) => r.source).join('|') || 'N/A',
    blacklistEnvVars: config.blacklistEnvVars?.source ?? 'N/A',
    modelApiEnabled: config.enableModelApi,
    tokenAuthorization: !config.disableTokenAuthorization,
    configSnapshots: !config.snapshotsDisabled,
  };
}

/** `--models` / load_models as given, or the snapshot restored in their place. */
function initialModels(config: ServerConfig): string {
  if (config.modelSnapshot) return `those of snapshot ${config.modelSnapshot.name}`;
  return config.loadModels.join(',') || 'N/A';
}

/**
 * A summary's entries as the lines under its record in the text layout, `Label: value`. Each line
 * starts with one of SUMMARY_LABELS (a key it does not know is left out), so that no value can
 * start a line that passes for a record of its own.
 */
export function summaryLines(summary: Record<string, unknown>, oneLine: (text: string) => string): string {
  return Object.entries(summary)
    .filter(([key]) => Object.hasOwn(SUMMARY_LABELS, key))
    .map(([key, value]) => `\n${SUMMARY_LABELS[key as keyof typeof SUMMARY_LABELS]}: ${oneLine(String(value))}`)
    .join('');
}

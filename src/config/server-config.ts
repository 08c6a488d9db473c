/**
 * @module config/server-config
 * config.properties + TS_* environment + CLI flags -> one frozen ServerConfig, with TorchServe's
 * keys, defaults and precedence (env, only with enable_envvars_config=true > CLI > file > defaults).
 */
import { existsSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { cgroupMemoryLimit } from '../host-limits.js';
import { resolve } from 'node:path';
import { closestKey, invalidValue, keyDefault, KEYS } from './keys.js';
import { parseProperties } from './properties.js';
import { newestSnapshot, parseModelSnapshot, snapshotDir, type ModelSnapshot } from './snapshot-file.js';

export interface ListenAddress {
  readonly scheme: 'http' | 'https' | 'unix';
  readonly host: string;
  /** For unix sockets, 0. */
  readonly port: number;
  /** For unix sockets, the socket path. */
  readonly path?: string;
  readonly raw: string;
}

export type MetricsMode = 'log' | 'prometheus' | 'legacy';

/** The server log's form: log4j-style text lines (TorchServe's) or pino's JSON lines. */
export type LogFormat = 'text' | 'json';

/** Per-model settings from the `models=` JSON of config.properties: name -> version -> settings. */
export type ModelsJson = Record<string, Record<string, Record<string, unknown>>>;

export interface ServerConfig {
  readonly inferenceAddress: ListenAddress;
  readonly managementAddress: ListenAddress;
  readonly metricsAddress: ListenAddress;
  readonly modelStore: string | undefined;
  /** Start-up models: `all`, or `name=file` / `file` items. */
  readonly loadModels: readonly string[];
  readonly models: ModelsJson;
  /** As configured (0 when unset); see `startupWorkers` for what start-up loading uses. */
  readonly defaultWorkersPerModel: number;
  /** max_workers_per_model, or when it is 0 what the machine can hold (derivedWorkerLimit). */
  readonly maxWorkersPerModel: number;
  /** Bytes the loaded models' workers may hold together (model_memory_budget_mb, or derivedMemoryBudget). */
  readonly modelMemoryBudget: number;
  /** The most model versions loaded at once (max_loaded_models); 0: no limit. */
  readonly maxLoadedModels: number;
  /** Niceness each worker process gets (worker_nice). */
  readonly workerNice: number;
  /** Models whose file is smaller share worker processes (shared_worker_model_mb); 0: none by default. */
  readonly sharedWorkerModelMb: number;
  /** The most models one shared worker process serves (shared_worker_models). */
  readonly sharedWorkerModels: number;
  /** Workers run under Node's permission model (worker_permission). */
  readonly workerPermission: boolean;
  /** How long the front end warms itself before start-up is over (front_end_warmup_ms). */
  readonly frontEndWarmupMs: number;
  readonly jobQueueSize: number;
  /** Workers follow the load (workers/scaler.ts): scale_waiting_per_worker (0: the largest batch), scale_up_delay_ms, scale_down_delay_ms. */
  readonly scaling: { readonly waitingPerWorker: number; readonly upDelayMs: number; readonly downDelayMs: number };
  readonly defaultResponseTimeout: number;
  readonly defaultStartupTimeout: number;
  /**
   * tsserve's own key `default_queue_timeout` (seconds; 0: none): a request still queued at this
   * age is answered 503 and never run, so none waits without bound; a model's clientTimeoutInMills
   * overrides it.
   */
  readonly defaultQueueTimeout: number;
  /** Requests a built-in handler's model with no batch_size takes at once (builtin_handler_batch_size). */
  readonly builtinHandlerBatchSize: number;
  readonly unregisterModelTimeout: number;
  readonly maxRequestSize: number;
  readonly maxResponseSize: number;
  /** Registration URLs must fully match one; by default only file URLs inside the model store. */
  readonly allowedUrls: readonly RegExp[];
  /** Environment variables whose names fully match are not passed to workers; undefined: none. */
  readonly blacklistEnvVars: RegExp | undefined;
  /** Install the npm dependencies of a model whose archive names a package.json as its requirements file. */
  readonly installPyDepPerModel: boolean;
  /** tsserve's own keys: what one model archive may unpack to (archive/extract.ts). */
  readonly archiveLimits: ArchiveLimits;
  /** tsserve's own keys: a URL registration downloads at most this many bytes, in this many seconds. */
  readonly maxDownloadSize: number;
  readonly downloadTimeout: number;
  /** tsserve's own key: on stop, seconds to finish accepted requests before failing the rest. */
  readonly drainTimeout: number;
  /** tsserve's own key: on stop, milliseconds idle kept-alive connections stay open for a request on its way. */
  readonly stopIdleGraceMs: number;
  readonly enableMetricsApi: boolean;
  readonly metricsMode: MetricsMode;
  /** A metrics.yaml (metrics/definitions.ts); undefined: TorchServe's default one. */
  readonly metricsConfig: string | undefined;
  /** Record a handler's metrics that the metrics.yaml does not declare, instead of dropping them. */
  readonly modelMetricsAutoDetect: boolean;
  /** The system-metrics collector (metrics/system.ts): off, or its period in seconds. */
  readonly disableSystemMetrics: boolean;
  readonly metricTimeInterval: number;
  readonly enableModelApi: boolean;
  readonly disableTokenAuthorization: boolean;
  readonly tokenExpirationMin: number;
  readonly corsAllowedOrigin: string;
  readonly corsAllowedMethods: string;
  readonly corsAllowedHeaders: string;
  readonly decodeInputRequest: boolean;
  /** false lifts the image size limit of tsserve/vision's decoders (handler/image-limit.ts). */
  readonly limitMaxImagePixels: boolean;
  /** Request envelope for every model; overrides each manifest's. */
  readonly serviceEnvelope: string | undefined;
  /** The Open Inference Protocol's REST extras (/v2, /v2/health/*) on the inference listener. */
  readonly openInferenceProtocol: boolean;
  /**
   * The listeners KServe's runtime sends traffic to (HTTP 8080, gRPC 8081), which TorchServe's
   * KServe image serves with a wrapper process; undefined when they are off.
   */
  readonly kserve: KserveListenConfig | undefined;
  /** Key material of `https://` listeners. */
  readonly tls: TlsConfig;
  readonly grpcInference: GrpcListenConfig;
  readonly grpcManagement: GrpcListenConfig;
  /** TLS on both gRPC listeners, with private_key_file + certificate_file. */
  readonly enableGrpcSsl: boolean;
  /** The request headers of stateful (sequence) models, lower-cased. */
  readonly sequenceHeaders: SequenceHeaders;
  readonly defaultServiceHandler: string | undefined;
  readonly snapshotsDisabled: boolean;
  /** config_snapshot_max_files: snapshot files kept. */
  readonly snapshotsKept: number;
  readonly logLocation: string;
  /** tsserve's own key `log_format`: the server log as log4j-style text or as JSON lines. */
  readonly logFormat: LogFormat;
  /** Export OpenTelemetry traces (otel_traces; the OTEL_* variables decide too, metrics/tracing.ts). */
  readonly otelTraces: boolean;
  /** The response header with a traced prediction's trace context (otel_trace_header); '' for none. */
  readonly otelTraceHeader: string;
  /** Where metrics_mode=log writes ts_metrics.log and model_metrics.log. */
  readonly metricsLocation: string;
  /** log_rolling_size_mb and log_rolling_max_files: when each log file rolls, and how many rolled ones stay. */
  readonly logRolling: { readonly maxBytes: number; readonly keep: number };
  /** The number in the first worker's name (`W-9000-model_1.0`), counting up. */
  readonly initialWorkerPort: number;
  /** key_file.json in the server's working directory. */
  readonly keyFile: string;
  /** Models to restore (a snapshot's `model_snapshot`); when present, loadModels is ignored. */
  readonly modelSnapshot: ModelSnapshot | undefined;
  /** The configuration file read (config.properties, --ts-config, a snapshot); undefined: none, the defaults. */
  readonly configFile: string | undefined;
  /** Every property in effect, for snapshots. */
  readonly properties: ReadonlyMap<string, string>;
  /** What the configuration has that tsserve ignores (unknown keys), for the log. */
  readonly warnings: readonly string[];
}

export interface CliOverrides {
  tsConfig?: string;
  modelStore?: string;
  models?: string[];
  ncs?: boolean;
  disableTokenAuth?: boolean;
  enableModelApi?: boolean;
}

/** TorchServe's TLS keys; files resolved against the working directory. */
export interface TlsConfig {
  readonly keystore: string | undefined;
  readonly keystorePass: string;
  readonly keystoreType: string;
  readonly privateKeyFile: string | undefined;
  readonly certificateFile: string | undefined;
}

export interface SequenceHeaders {
  readonly id: string;
  readonly start: string;
  readonly end: string;
}

/** `max_archive_unpacked_size`, `max_archive_entries`, `max_archive_compression_ratio`. */
export interface ArchiveLimits {
  readonly maxUnpackedBytes: number;
  readonly maxEntries: number;
  /** Unpacked over packed size, for entries (and whole .tar.gz streams) over 1 MiB. */
  readonly maxCompressionRatio: number;
}

/** Well above any real model (ONNX weights of several GB), well below what takes a host down. */
export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = {
  maxUnpackedBytes: Number(keyDefault('max_archive_unpacked_size')),
  maxEntries: Number(keyDefault('max_archive_entries')),
  maxCompressionRatio: Number(keyDefault('max_archive_compression_ratio')),
};

/** tsserve's own keys `kserve_inference_address` and `kserve_grpc_inference_port`. */
export interface KserveListenConfig {
  readonly http: ListenAddress;
  readonly grpc: GrpcListenConfig;
}

export interface GrpcListenConfig {
  readonly host: string;
  readonly port: number;
  /** grpc_*_max_connection_age_ms and its grace; undefined: no limit. */
  readonly maxConnectionAgeMs: number | undefined;
  readonly maxConnectionAgeGraceMs: number | undefined;
}

/** The port of an address that names none, by scheme, as TorchServe picks it. */
const DEFAULT_PORTS = {
  inference: { http: 80, https: 443 },
  management: { http: 8081, https: 8444 },
  metrics: { http: 8082, https: 8445 },
} as const;

export class ConfigError extends Error {}

/**
 * The response headers and gRPC metadata tsserve writes itself (or HTTP does): a header of the
 * configuration named so would replace them (x-request-id is TorchServe's request id; pragma,
 * cache-control and expires go on every answer, http/listener.ts fixedHeaders).
 */
const OWN_HEADERS = new Set([
  'x-request-id',
  'content-type',
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'date',
  'retry-after',
  'warning',
  'www-authenticate',
  'cache-control',
  'pragma',
  'expires',
  'location',
  'vary',
  'inference-header-content-length',
]);

/**
 * The request headers tsserve gives a handler itself (http/inference.ts, models/model.ts): a
 * sequence header named so would be set on every request (`url_path` '' named the sequence '' on
 * every prediction, refused).
 */
const HANDLER_HEADERS = new Set(['url_path', 'explain', 'describe']);

/**
 * Headers of the connection, not of an answer: HTTP/1 takes `trailer` only with trailers, and
 * Node's HTTP/2 refuses each of them in a gRPC call's metadata, throwing where the call's status
 * is sent, outside any handler (review-17 F1: `te` as the sequence header took the server down).
 */
const CONNECTION_HEADERS = new Set(['te', 'trailer', 'upgrade', 'proxy-connection', 'http2-settings', 'host']);

/** A header tsserve writes, or no answer may carry: a header of the configuration may not name it. */
function isOwnHeader(name: string): boolean {
  return (
    OWN_HEADERS.has(name) ||
    CONNECTION_HEADERS.has(name) ||
    HANDLER_HEADERS.has(name) ||
    name.startsWith('access-control-') ||
    name.startsWith('grpc-') ||
    name.endsWith('-bin')
  );
}

/**
 * A name that is an HTTP header's (RFC 9110's token) and a gRPC metadata key's both: letters,
 * digits, `_`, `.`, `-` (gRPC takes lowercase keys; HTTP's names are the same in any case).
 */
const HEADER_NAME = /^[0-9A-Za-z_.-]+$/;

/**
 * The name of a header the configuration names, lowercased: one that REST answers, gRPC metadata
 * and trailers all carry. One no answer could carry failed every answer that named it (REST with
 * a 500, gRPC with its call or the server), and one tsserve writes itself would replace it.
 * `instead`: what to name instead, as the error says.
 */
function headerName(key: string, raw: string, instead: string): string {
  if (!HEADER_NAME.test(raw)) throw new ConfigError(`Invalid configuration: ${key} is not a header name (letters, digits, _ . -): ${raw}`);
  const name = raw.toLowerCase();
  if (isOwnHeader(name)) {
    throw new ConfigError(`Invalid configuration: ${key}=${raw} names a header tsserve writes itself or no answer may carry; name another (${instead})`);
  }
  return name;
}

/** otel_trace_header: a header name, or '' for `none`. */
function traceHeader(text: (key: string) => string): string {
  const raw = text('otel_trace_header');
  return raw.toLowerCase() === 'none' ? '' : headerName('otel_trace_header', raw, 'traceresponse, the default, or none');
}

const SEQUENCE_HEADER_KEYS = ['ts_header_key_sequence_id', 'ts_header_key_sequence_start', 'ts_header_key_sequence_end'] as const;

/**
 * The sequence headers (ts_header_key_sequence_*), each a header name (headerName) and each its
 * own, the trace header's too: a start header named as the id header made every sequence's id
 * "true", and the answer's sequence id replaced a trace header of the same name.
 */
function sequenceHeaders(text: (key: string) => string, traceHeader: string): SequenceHeaders {
  const [id, start, end] = SEQUENCE_HEADER_KEYS.map((k) => headerName(k, text(k), `${keyDefault(k)}, the default`)) as [string, string, string];
  const names = traceHeader ? [id, start, end, traceHeader] : [id, start, end];
  if (new Set(names).size < names.length) {
    const keys = [...SEQUENCE_HEADER_KEYS, ...(traceHeader ? ['otel_trace_header'] : [])];
    throw new ConfigError(`Invalid configuration: ${keys.join(', ')} must name different headers: ${names.join(', ')}`);
  }
  return { id, start, end };
}

/** The envelope a model's requests come in: the server's service_envelope, else its archive's (MANIFEST.json's `envelope`). */
export function envelopeOf(config: Pick<ServerConfig, 'serviceEnvelope'>, archived: string | undefined): string | undefined {
  return config.serviceEnvelope ?? archived;
}

/**
 * Which file TorchServe would read: TS_CONFIG_FILE, then --ts-config, then the newest snapshot
 * (unless --ncs), then ./config.properties.
 */
export function configFilePath(cli: CliOverrides, env: NodeJS.ProcessEnv, cwd: string): string | undefined {
  const explicit = env.TS_CONFIG_FILE ?? cli.tsConfig;
  if (explicit) return resolve(cwd, explicit);
  const snapshot = cli.ncs ? undefined : newestSnapshot(snapshotDir(logLocationOf(env, cwd)));
  if (snapshot) return snapshot;
  const local = resolve(cwd, 'config.properties');
  return existsSync(local) ? local : undefined;
}

export function loadServerConfig(cli: CliOverrides = {}, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): ServerConfig {
  const file = configFilePath(cli, env, cwd);
  if (file && !existsSync(file)) throw new ConfigError(`--ts-config file not found: ${file}`);
  const props = new Map(file ? parseFileProperties(file, env) : []);
  applyCli(props, cli);
  if (props.get('enable_envvars_config') === 'true') applyEnv(props, env);
  const warnings = checkProperties(props);
  return buildConfig(props, { cli, env, cwd, warnings, file });
}

/**
 * Every key against the table (config/keys.ts): a value it does not allow stops the start, every
 * one listed with what is allowed; an unknown key is a warning naming the nearest known one.
 */
function checkProperties(props: ReadonlyMap<string, string>): string[] {
  const errors: string[] = [];
  const warnings: string[] = [];
  for (const [key, value] of props) {
    const spec = KEYS.get(key);
    if (!spec) {
      const near = closestKey(key);
      warnings.push(`Unknown configuration key ${key}${near ? `: did you mean ${near}?` : ''} It is ignored.`);
      continue;
    }
    const why = invalidValue(spec, value);
    if (why) errors.push(`${key}=${value} is not allowed: ${key} is ${why}`);
  }
  if (errors.length > 0) throw new ConfigError(`Invalid configuration:\n  ${errors.join('\n  ')}`);
  return warnings;
}

function parseFileProperties(file: string, env: NodeJS.ProcessEnv): Map<string, string> {
  try {
    return parseProperties(readFileSync(file, 'utf8'), env);
  } catch (err) {
    throw new ConfigError(`Invalid configuration: ${(err as Error).message}`);
  }
}

function applyCli(props: Map<string, string>, cli: CliOverrides): void {
  if (cli.modelStore) props.set('model_store', cli.modelStore);
  if (cli.models?.length) props.set('load_models', cli.models.join(','));
  // These two flags can only turn the feature in their direction, as in TorchServe.
  if (cli.disableTokenAuth) props.set('disable_token_authorization', 'true');
  if (cli.enableModelApi) props.set('enable_model_api', 'true');
}

function applyEnv(props: Map<string, string>, env: NodeJS.ProcessEnv): void {
  for (const spec of KEYS.values()) {
    // A key of TorchServe's that means nothing here is not read from the environment at all.
    if (spec.env === false || spec.applies === 'ignored') continue;
    const value = env[spec.env];
    if (value !== undefined) props.set(spec.name, value);
  }
  if (props.get('use_env_allowed_urls') === 'true' && env.TS_ALLOWED_URLS) {
    props.set('allowed_urls', env.TS_ALLOWED_URLS);
  }
}

function buildConfig(
  props: Map<string, string>,
  { cli, env, cwd, warnings, file }: { cli: CliOverrides; env: NodeJS.ProcessEnv; cwd: string; warnings: readonly string[]; file: string | undefined },
): ServerConfig {
  // Values were checked against the table (checkProperties); a key unset takes its table default.
  const str = (k: string): string | undefined => props.get(k)?.trim() || undefined;
  const int = (k: string): number => parseIntOr(props.get(k), Number(keyDefault(k)));
  const bool = (k: string): boolean => (str(k) ?? keyDefault(k)).toLowerCase() === 'true';
  const text = (k: string): string => str(k) ?? keyDefault(k);
  const address = (k: string, ports: { http: number; https: number }): ListenAddress => parseAddress(text(k), ports);
  const path = (k: string): string | undefined => {
    const v = str(k);
    return v === undefined ? undefined : resolve(cwd, v);
  };
  // An unset gRPC address follows its REST API's host (TorchServe: always 127.0.0.1), so a server
  // whose inference API is reachable from outside (a container's 0.0.0.0) is reachable over gRPC.
  const grpcListen = (api: 'inference' | 'management'): GrpcListenConfig => ({
    host: str(`grpc_${api}_address`) ?? restHost(api === 'inference' ? inferenceAddress : managementAddress),
    port: int(`grpc_${api}_port`),
    maxConnectionAgeMs: positiveOrUndefined(props.get(`grpc_${api}_max_connection_age_ms`)),
    maxConnectionAgeGraceMs: positiveOrUndefined(props.get(`grpc_${api}_max_connection_age_grace_ms`)),
  });
  const modelStore = str('model_store');
  const blacklist = str('blacklist_env_vars');
  const inferenceAddress = address('inference_address', DEFAULT_PORTS.inference);
  const managementAddress = address('management_address', DEFAULT_PORTS.management);
  return Object.freeze({
    inferenceAddress,
    managementAddress,
    metricsAddress: address('metrics_address', DEFAULT_PORTS.metrics),
    modelStore: modelStore ? resolve(cwd, modelStore) : undefined,
    loadModels: splitList(str('load_models')),
    models: parseModelsJson(str('models')),
    defaultWorkersPerModel: int('default_workers_per_model'),
    maxWorkersPerModel: int('max_workers_per_model') || derivedWorkerLimit(),
    modelMemoryBudget: int('model_memory_budget_mb') * 2 ** 20 || derivedMemoryBudget(),
    maxLoadedModels: int('max_loaded_models'),
    workerNice: int('worker_nice'),
    sharedWorkerModelMb: int('shared_worker_model_mb'),
    sharedWorkerModels: int('shared_worker_models'),
    workerPermission: bool('worker_permission'),
    frontEndWarmupMs: int('front_end_warmup_ms'),
    jobQueueSize: int('job_queue_size'),
    scaling: { waitingPerWorker: int('scale_waiting_per_worker'), upDelayMs: int('scale_up_delay_ms'), downDelayMs: int('scale_down_delay_ms') },
    defaultResponseTimeout: int('default_response_timeout'),
    defaultStartupTimeout: int('default_startup_timeout'),
    defaultQueueTimeout: int('default_queue_timeout'),
    builtinHandlerBatchSize: int('builtin_handler_batch_size'),
    unregisterModelTimeout: int('unregister_model_timeout'),
    maxRequestSize: int('max_request_size'),
    maxResponseSize: int('max_response_size'),
    allowedUrls: allowedUrls(str('allowed_urls'), modelStore ? resolve(cwd, modelStore) : undefined),
    blacklistEnvVars: blacklist === undefined ? undefined : fullMatch('blacklist_env_vars', blacklist, ''),
    installPyDepPerModel: bool('install_py_dep_per_model'),
    archiveLimits: {
      maxUnpackedBytes: int('max_archive_unpacked_size'),
      maxEntries: int('max_archive_entries'),
      maxCompressionRatio: int('max_archive_compression_ratio'),
    },
    maxDownloadSize: int('max_download_size'),
    downloadTimeout: int('download_timeout'),
    drainTimeout: int('drain_timeout'),
    stopIdleGraceMs: int('stop_idle_grace_ms'),
    enableMetricsApi: bool('enable_metrics_api'),
    disableSystemMetrics: bool('disable_system_metrics'),
    metricTimeInterval: int('metric_time_interval'),
    metricsMode: parseMetricsMode(str('metrics_mode')),
    otelTraces: bool('otel_traces'),
    otelTraceHeader: traceHeader(text),
    metricsConfig: path('metrics_config'),
    modelMetricsAutoDetect: bool('model_metrics_auto_detect'),
    enableModelApi: bool('enable_model_api'),
    disableTokenAuthorization: bool('disable_token_authorization'),
    tokenExpirationMin: Number(text('token_expiration_min')),
    corsAllowedOrigin: str('cors_allowed_origin') ?? '',
    corsAllowedMethods: str('cors_allowed_methods') ?? '',
    corsAllowedHeaders: str('cors_allowed_headers') ?? '',
    decodeInputRequest: bool('decode_input_request'),
    limitMaxImagePixels: bool('limit_max_image_pixels'),
    serviceEnvelope: str('service_envelope'),
    // TorchServe reads this variable even when environment configuration is off.
    openInferenceProtocol: bool('ts_open_inference_protocol') || env.TS_OPEN_INFERENCE_PROTOCOL === 'oip',
    kserve: kserveListeners(props, env),
    grpcInference: grpcListen('inference'),
    grpcManagement: grpcListen('management'),
    enableGrpcSsl: bool('enable_grpc_ssl'),
    sequenceHeaders: sequenceHeaders(text, traceHeader(text)),
    tls: {
      keystore: path('keystore'),
      keystorePass: props.get('keystore_pass') ?? keyDefault('keystore_pass'),
      keystoreType: text('keystore_type'),
      privateKeyFile: path('private_key_file'),
      certificateFile: path('certificate_file'),
    },
    defaultServiceHandler: str('default_service_handler'),
    snapshotsDisabled: cli.ncs === true,
    snapshotsKept: int('config_snapshot_max_files'),
    logLocation: logLocationOf(env, cwd),
    logFormat: text('log_format').toLowerCase() === 'json' ? 'json' : 'text',
    // TorchServe's log4j2.xml: METRICS_LOCATION, else ./logs, whatever LOG_LOCATION says.
    metricsLocation: resolve(cwd, env.METRICS_LOCATION ?? 'logs'),
    logRolling: { maxBytes: Math.round(Number(text('log_rolling_size_mb')) * 1024 * 1024), keep: int('log_rolling_max_files') },
    initialWorkerPort: int('initial_worker_port'),
    keyFile: resolve(cwd, 'key_file.json'),
    modelSnapshot: parseSnapshotProperty(props.get('model_snapshot')),
    configFile: file,
    properties: props,
    warnings,
  });
}

/**
 * KServe's runtime starts the server with TS_SERVICE_ENVELOPE=kserve|kservev2 and sends traffic to
 * 8080 (HTTP) and 8081 (gRPC v2), where TorchServe's KServe image runs a wrapper in front of the
 * inference address (8085 in KServe's config.properties). tsserve opens those listeners itself when
 * it sees that variable, or when `enable_kserve_listeners=true`; `false` keeps them closed.
 */
function kserveListeners(props: ReadonlyMap<string, string>, env: NodeJS.ProcessEnv): KserveListenConfig | undefined {
  const enabled = props.get('enable_kserve_listeners')?.trim().toLowerCase();
  const underKserve = env.TS_SERVICE_ENVELOPE === 'kserve' || env.TS_SERVICE_ENVELOPE === 'kservev2';
  if (enabled === 'false' || (enabled !== 'true' && !underKserve)) return undefined;
  const http = parseAddress(props.get('kserve_inference_address')?.trim() || keyDefault('kserve_inference_address'), { http: 8080, https: 8443 });
  const port = parseIntOr(props.get('kserve_grpc_inference_port'), Number(keyDefault('kserve_grpc_inference_port')));
  return { http, grpc: { host: http.scheme === 'unix' ? '0.0.0.0' : http.host, port, maxConnectionAgeMs: undefined, maxConnectionAgeGraceMs: undefined } };
}

/**
 * TorchServe allows every file and http(s) URL by default; tsserve allows only what is already in
 * the model store, so a register call cannot make the server fetch from the network unless
 * allowed_urls says so (docs/compatibility.md).
 */
/**
 * The operator's allowed_urls match regardless of case, as TorchServe matches them. The default,
 * the model store's files, matches as the file system names them: on Linux /srv/STORE is not the
 * store /srv/store, and a case-blind default let archives from beside the store in.
 */
function allowedUrls(configured: string | undefined, store: string | undefined): RegExp[] {
  if (configured !== undefined) return splitList(configured).map((r) => fullMatch('allowed_urls', r, 'i'));
  return store ? [fullMatch('allowed_urls', storeOnlyUrls(store), '')] : [];
}

function storeOnlyUrls(store: string | undefined): string {
  if (!store) return '';
  return `file://${store.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[^/]+`;
}

function logLocationOf(env: NodeJS.ProcessEnv, cwd: string): string {
  return resolve(cwd, env.LOG_LOCATION ?? 'logs');
}

function parseSnapshotProperty(value: string | undefined): ModelSnapshot | undefined {
  if (!value) return undefined;
  try {
    return parseModelSnapshot(value);
  } catch {
    throw new ConfigError('Invalid configuration: model_snapshot is not valid JSON');
  }
}

/** Workers per start-up model: default_workers_per_model, or the CPU count when it is 0. */
export function startupWorkers(config: ServerConfig): number {
  return config.defaultWorkersPerModel > 0 ? config.defaultWorkersPerModel : cpus().length;
}

/** Memory a worker is given room for: about four times a bare worker's 66 MB, for its model. */
const MEMORY_PER_WORKER = 256 * 1024 * 1024;

/**
 * max_workers_per_model's 0: four workers a core (more than one a core serves handlers that wait
 * on I/O), but no more than one per MEMORY_PER_WORKER of the machine's memory, and at least one.
 */
export function derivedWorkerLimit(cores = cpus().length, memory = totalmem()): number {
  return Math.max(1, Math.min(4 * cores, Math.floor(memory / MEMORY_PER_WORKER)));
}

/** The share of the machine's (or the cgroup's) memory model_memory_budget_mb's 0 gives the loaded models. */
const MODEL_MEMORY_SHARE = 0.8;

/**
 * model_memory_budget_mb's 0: 80% of the memory this server can have, the smaller of the machine's
 * and its cgroup's limit (a container's), leaving the rest to the front end and the system.
 */
export function derivedMemoryBudget(machine = totalmem(), cgroupLimit = cgroupMemoryLimit()?.max): number {
  return Math.floor(MODEL_MEMORY_SHARE * Math.min(machine, cgroupLimit ?? machine));
}

export function parseIntOr(value: string | undefined, dflt: number): number {
  if (value === undefined || !/^\s*-?\d+\s*$/.test(value)) return dflt;
  return Number.parseInt(value, 10);
}

function splitList(value: string | undefined): string[] {
  return value
    ? value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

/** A regex that must match a whole string; a pattern that does not compile stops the start. */
function fullMatch(key: string, pattern: string, flags: string): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`, flags);
  } catch (err) {
    throw new ConfigError(`${key}: ${(err as Error).message}`);
  }
}

function parseMetricsMode(value: string | undefined): MetricsMode {
  const v = value?.toLowerCase();
  // TorchServe's default is `log`, whose /metrics is empty; tsserve serves Prometheus text unless
  // told otherwise (docs/compatibility.md).
  return v === 'log' || v === 'legacy' ? v : 'prometheus';
}

function parseModelsJson(value: string | undefined): ModelsJson {
  if (!value) return {};
  try {
    const parsed: unknown = JSON.parse(value);
    return parsed && typeof parsed === 'object' ? (parsed as ModelsJson) : {};
  } catch {
    throw new ConfigError(`Invalid configuration: models is not valid JSON`);
  }
}

export function parseAddress(raw: string, ports: { http: number; https: number }): ListenAddress {
  const unix = /^unix:(\/.+)$/i.exec(raw);
  if (unix) return { scheme: 'unix', host: '', port: 0, path: unix[1]!, raw };
  const m = /^(https?):\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/i.exec(raw.trim());
  if (!m) throw new ConfigError(`Invalid binding address: ${raw}`);
  const scheme = m[1]!.toLowerCase() as 'http' | 'https';
  const port = m[3] === undefined ? ports[scheme] : Number(m[3]);
  if (port >= 65535) throw new ConfigError(`Invalid port number: ${raw}`);
  return { scheme, host: m[2]!.replace(/^\[|\]$/g, ''), port, raw };
}

/** The IP a REST address binds, for a gRPC listener to follow; a unix socket's is the loopback. */
function restHost(address: ListenAddress): string {
  return address.scheme === 'unix' ? '127.0.0.1' : address.host;
}

/** A positive duration in ms; TorchServe's "infinite" default is Long.MAX, beyond any timer. */
function positiveOrUndefined(value: string | undefined): number | undefined {
  const n = parseIntOr(value, 0);
  return n > 0 && n <= 2 ** 31 - 1 ? n : undefined;
}

/**
 * @module config/keys
 * Every config.properties key tsserve knows, once: its type, default, allowed values, the
 * environment variable that may set it, where it applies and what it does. Checking a file
 * (config/server-config.ts), the environment mapping, and docs/configuration.md all come from
 * this table; a key added here is validated and documented, and one missing here is warned about.
 */

export type KeyType =
  | 'int'
  | 'number'
  | 'bool'
  | 'string'
  | 'path'
  | 'list'
  | 'regex'
  | 'json'
  /** A REST listener: `http(s)://host[:port]` or `unix:/path`. */
  | 'address'
  | 'enum';

export interface KeySpec {
  readonly name: string;
  readonly type: KeyType;
  /** The default as a user would write it; undefined: unset. */
  readonly default?: string;
  readonly min?: number;
  readonly max?: number;
  /** For `enum`, case-insensitive. */
  readonly values?: readonly string[];
  /** The environment variable (with enable_envvars_config=true); false: not settable that way. */
  readonly env: string | false;
  /** `server`: the front end reads it; `worker`: passed to every worker; `ignored`: accepted for compatibility, no effect. */
  readonly applies: 'server' | 'worker' | 'ignored';
  /** tsserve's own key, which TorchServe does not have. */
  readonly own?: true;
  readonly doc: string;
}

export const INT_MAX = 2 ** 31 - 1;
const PORT = { type: 'int', min: 0, max: 65534 } as const;
const SECONDS = { type: 'int', min: 0, max: INT_MAX } as const;
/** One of tsserve's own limits, where 0 means "derived" or "none" (said in its doc). */
const OWN_COUNT = { type: 'int', min: 0, max: INT_MAX, default: '0', applies: 'server', own: true } as const;

type Spec = Omit<KeySpec, 'name' | 'env'> & { env?: string | false };

/** name -> spec; `env` defaults to TS_<NAME>. */
const TABLE: Record<string, Spec> = {
  inference_address: { type: 'address', default: 'http://127.0.0.1:8080', applies: 'server', doc: 'The inference API listener.' },
  management_address: {
    type: 'address',
    default: 'http://127.0.0.1:8081',
    applies: 'server',
    doc: 'The management API listener; the same address as inference serves both on one socket.',
  },
  metrics_address: { type: 'address', default: 'http://127.0.0.1:8082', applies: 'server', doc: 'The metrics API listener.' },
  grpc_inference_address: {
    type: 'string',
    applies: 'server',
    doc: "IP the gRPC inference API binds; unset: the inference address's host (TorchServe: 127.0.0.1).",
  },
  grpc_management_address: { type: 'string', applies: 'server', doc: "IP the gRPC management API binds; unset: the management address's host." },
  grpc_inference_port: { ...PORT, default: '7070', applies: 'server', doc: 'gRPC inference port.' },
  grpc_management_port: { ...PORT, default: '7071', applies: 'server', doc: 'gRPC management port.' },
  grpc_inference_max_connection_age_ms: { type: 'int', min: 0, applies: 'server', doc: 'Close gRPC inference connections older than this; unset: never.' },
  grpc_management_max_connection_age_ms: { type: 'int', min: 0, applies: 'server', doc: 'Close gRPC management connections older than this; unset: never.' },
  grpc_inference_max_connection_age_grace_ms: { type: 'int', min: 0, applies: 'server', doc: 'Grace for calls on an aged gRPC inference connection.' },
  grpc_management_max_connection_age_grace_ms: { type: 'int', min: 0, applies: 'server', doc: 'Grace for calls on an aged gRPC management connection.' },
  enable_grpc_ssl: { type: 'bool', default: 'false', applies: 'server', doc: 'TLS on both gRPC listeners, with private_key_file and certificate_file.' },
  model_store: { type: 'path', applies: 'server', doc: 'The model store directory (--model-store overrides it).' },
  load_models: { type: 'list', applies: 'server', doc: 'Models to load at start: all, or file / name=file items (--models overrides it).' },
  models: { type: 'json', env: false, applies: 'server', doc: 'Per-model settings: {"name": {"version": {...}}}.' },
  model_snapshot: { type: 'json', env: false, applies: 'server', doc: 'A snapshot of models to restore at start; load_models is then ignored.' },
  default_workers_per_model: { type: 'int', min: 0, max: 1024, default: '0', applies: 'server', doc: 'Workers per start-up model; 0: one per CPU core.' },
  worker_permission: {
    type: 'bool',
    default: 'false',
    applies: 'server',
    own: true,
    doc: "Workers run under Node's permission model: a handler reads only its model's directory and tsserve's own files, writes only its model's directory and starts no process, so a path it is given or gets wrong does not reach key_file.json or the server's configuration. A guard against a handler's mistakes, not a sandbox for code you do not trust: native addons (onnxruntime-node, sharp, or one the archive ships) run outside it, the model directory's links to tsserve's packages lead out of it, signals and the network are not covered, and install_py_dep_per_model runs npm and the archive's package.json scripts as the server. Off by default: handlers that read or write elsewhere, shell out, or run with a NODE_OPTIONS preload that uses process.binding fail under it.",
  },
  max_workers_per_model: {
    type: 'int',
    min: 0,
    max: 1024,
    default: '0',
    applies: 'server',
    own: true,
    doc: 'The most worker processes one model version may have; 0: four per CPU core, and no more than one per 256 MiB of memory. A register or scale request asking for more is refused (400); more from model-config.yaml, the models JSON, a snapshot or default_workers_per_model is cut to it, with a warning in the log.',
  },
  model_memory_budget_mb: {
    ...OWN_COUNT,
    doc: "MiB the loaded models' workers may hold together (their PSS, measured from /proc; a model not loaded yet counts 1.25x its model file plus a worker's base). Loading one more model past it first unloads the least recently used idle models (no request queued or running), which load again on their next request; a model that cannot fit even then is answered 507. 0: 80% of the machine's memory or of the cgroup's memory limit, whichever is smaller.",
  },
  max_loaded_models: {
    ...OWN_COUNT,
    doc: 'The most model versions loaded (with workers) at once; loading one more first unloads the least recently used idle one, as model_memory_budget_mb does. 0: no limit but the memory budget.',
  },
  shared_worker_model_mb: {
    ...OWN_COUNT,
    doc: "Models whose model file (the manifest's serializedFile) is smaller than this many MB share worker processes with other models: each of their workers is a handler and session in a shared host (worker_permission off), about 1.3 MB for an mnist-sized model against 25 MB for a process of its own, and a model loaded on demand waits for its session (tens of ms), not a process's start. A model's model-config.yaml sharedWorker: true or false overrides it. What they share they crash together: a handler that kills its process ends every model's worker in it (each answers what it held with \"Worker died.\" and restarts). 0: none share unless their model-config.yaml says so (each worker a process of its own, as TorchServe's).",
  },
  shared_worker_models: {
    type: 'int',
    min: 1,
    max: 1024,
    default: '32',
    applies: 'server',
    own: true,
    doc: 'The most models one shared worker process serves (shared_worker_model_mb, sharedWorker); past it another process is started. Its models take turns on one JavaScript thread.',
  },
  worker_nice: {
    type: 'int',
    min: 0,
    max: 19,
    default: '10',
    applies: 'server',
    own: true,
    doc: 'How much workers yield the CPU to the front end when both want it (Linux niceness added to each worker); 0: workers compete as equals.',
  },
  front_end_warmup_ms: {
    type: 'int',
    min: 0,
    max: 60_000,
    default: '2000',
    applies: 'server',
    own: true,
    doc: 'Milliseconds the server spends sending itself predictions of each start-up model with a model-config.yaml warmupFile before it says it has started (counted and logged nowhere, and no load for the workers to follow, also those it gave up on that still wait after it); 0: none.',
  },
  scale_waiting_per_worker: {
    type: 'int',
    min: 0,
    max: INT_MAX,
    default: '0',
    applies: 'server',
    own: true,
    doc: "A model whose maxWorkers is above its minWorkers adds a worker when, over scale_up_delay_ms, more than this many requests waited per worker, or a request was refused for a full queue (with useJobTicket: for no worker free) (a model's model-config.yaml scaleWaitingPerWorker, 0 to 2147483647, overrides it); 0: the model's largest batch (batch_size, or builtin_handler_batch_size), a full batch behind every worker. Workers added never exceed maxWorkers, the machine's cores (counting every model's workers) or what its free memory holds of this model's workers. A stateful model (sequenceBatching) is the exception: its refusals are its sequences' (unknown, closed, expired, or their own queue full) and add no worker, and its workers hold its sequences, so none is stopped for idling.",
  },
  scale_up_delay_ms: {
    type: 'int',
    min: 0,
    max: INT_MAX,
    default: '1000',
    applies: 'server',
    own: true,
    doc: "Milliseconds requests must wait above scale_waiting_per_worker before a worker is added (a model's model-config.yaml scaleUpDelayMSec, 0 to 2147483647, overrides it; a larger value is refused with a warning, and this key used); none is added while one is still starting. A model with minWorkers 0 starts its first worker at the first request, without this delay and whatever the cores bound, with or without useJobTicket: the request waits for it.",
  },
  scale_down_delay_ms: {
    type: 'int',
    min: 0,
    max: INT_MAX,
    default: '60000',
    applies: 'server',
    own: true,
    doc: "Milliseconds a model's workers above its minWorkers may go unneeded (fewer of them busy at once, and fewer requests waiting, than there are workers) before the idle ones are stopped (a model's model-config.yaml scaleDownDelayMSec, 0 to 2147483647, overrides it; a larger value is refused with a warning, and this key used). A worker stopped this way finishes its batch first; minWorkers 0 stops the last one too, and the next request starts it again. minWorkers 0 comes from the scale API's min_worker=0, the models= JSON, or model-config.yaml's minWorkers: 0 with maxWorkers 1 or more (TorchServe raises a YAML minWorkers 0 to 1, so starts one worker at once); with maxWorkers 0 the YAML pair is not used. A model at 0 workers stays registered and holds no worker process: it counts in neither model_memory_budget_mb nor max_loaded_models until its next request starts a worker, which they admit as any load.",
  },
  job_queue_size: { type: 'int', min: 1, max: INT_MAX, default: '100', applies: 'server', doc: "Each model version's queue of accepted requests." },
  default_response_timeout: { ...SECONDS, default: '120', applies: 'server', doc: 'Seconds a batch may run before its worker is stopped (response_timeout).' },
  default_startup_timeout: { ...SECONDS, default: '120', applies: 'server', doc: 'Seconds a worker may take to load its model.' },
  builtin_handler_batch_size: {
    type: 'int',
    min: 1,
    max: 1024,
    default: '8',
    applies: 'server',
    own: true,
    doc: "A model with a built-in handler and no batch_size set takes up to this many queued requests at once, without waiting (its describe still says batchSize 1); 1: TorchServe's one request at a time.",
  },
  default_queue_timeout: {
    ...SECONDS,
    default: '30',
    applies: 'server',
    own: true,
    doc: "Seconds a request may wait in the queue before a 503 (a model's clientTimeoutInMills overrides it); 0: no bound.",
  },
  unregister_model_timeout: { ...SECONDS, default: '120', applies: 'server', doc: 'Seconds an unregister drains accepted requests.' },
  drain_timeout: {
    ...SECONDS,
    default: '30',
    applies: 'server',
    own: true,
    doc: 'Seconds a stop (SIGTERM, tsserve --stop) gives accepted requests before it answers the rest with an error.',
  },
  stop_idle_grace_ms: {
    type: 'int',
    min: 0,
    max: 500,
    default: '200',
    applies: 'server',
    own: true,
    doc: "Milliseconds a stop keeps the REST listeners' idle kept-alive connections open for a request a client wrote before it could know of the stop: read and answered with the stop's 503, where ending the connection at once lost it unread (a reset; the client cannot tell whether its request ran). 0: ended at once; at most 500, when a stop with nothing in flight ends every connection.",
  },
  max_request_size: {
    type: 'int',
    min: 1,
    max: INT_MAX,
    default: '6553500',
    applies: 'server',
    doc: 'Largest request body (bytes); larger ones get 413 unread.',
  },
  max_response_size: { type: 'int', min: 1, max: INT_MAX, default: '6553500', applies: 'server', doc: 'Largest answer (bytes); larger ones are a 500.' },
  max_download_size: {
    type: 'int',
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    default: String(2 * 1024 ** 3),
    applies: 'server',
    own: true,
    doc: 'Largest archive a URL registration downloads (bytes).',
  },
  download_timeout: { ...SECONDS, default: '600', applies: 'server', own: true, doc: 'Seconds a URL registration may download.' },
  max_archive_unpacked_size: {
    type: 'int',
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    default: String(8 * 1024 ** 3),
    applies: 'server',
    own: true,
    doc: 'Largest size (bytes) a model archive may unpack to.',
  },
  max_archive_entries: {
    type: 'int',
    min: 1,
    max: INT_MAX,
    default: '10000',
    applies: 'server',
    own: true,
    doc: 'Most files and directories a model archive may hold.',
  },
  max_archive_compression_ratio: {
    type: 'int',
    min: 1,
    max: INT_MAX,
    default: '1000',
    applies: 'server',
    own: true,
    doc: 'Most an archive entry over 1 MiB (or a whole .tar.gz) may be compressed.',
  },
  limit_max_image_pixels: { type: 'bool', default: 'true', applies: 'worker', doc: "false lifts the image size limit of tsserve/vision's decoders." },
  decode_input_request: { type: 'bool', default: 'true', applies: 'worker', doc: 'Decode JSON and text inputs for handlers; false: every input as bytes.' },
  default_service_handler: { type: 'string', applies: 'server', doc: 'The handler of an archive whose manifest names none.' },
  service_envelope: {
    type: 'enum',
    values: ['body', 'json', 'kserve', 'kservev2'],
    applies: 'worker',
    doc: 'Request envelope for every model (a manifest may name its own).',
  },
  allowed_urls: { type: 'list', applies: 'server', doc: 'Regular expressions a registration URL must match; default: files in the model store only.' },
  use_env_allowed_urls: { type: 'bool', default: 'false', env: false, applies: 'server', doc: 'Let TS_ALLOWED_URLS set allowed_urls.' },
  install_py_dep_per_model: {
    type: 'bool',
    default: 'false',
    applies: 'server',
    doc: "npm install an archive's package.json requirements file at registration.",
  },
  blacklist_env_vars: { type: 'regex', applies: 'worker', doc: 'Environment variables whose names match are kept from workers.' },
  cors_allowed_origin: { type: 'string', applies: 'server', doc: 'Access-Control-Allow-Origin on every answer.' },
  cors_allowed_methods: { type: 'string', applies: 'server', doc: 'Access-Control-Allow-Methods on every answer.' },
  cors_allowed_headers: { type: 'string', applies: 'server', doc: 'Access-Control-Allow-Headers on every answer.' },
  keystore: { type: 'path', applies: 'server', doc: 'PKCS12 keystore of https:// listeners.' },
  keystore_pass: { type: 'string', default: 'changeit', applies: 'server', doc: "The keystore's password." },
  keystore_type: {
    type: 'enum',
    values: ['PKCS12', 'JKS'],
    default: 'PKCS12',
    applies: 'server',
    doc: 'PKCS12 (JKS is refused at start with the command that converts it).',
  },
  private_key_file: { type: 'path', applies: 'server', doc: 'PEM private key of https:// listeners and gRPC TLS.' },
  certificate_file: { type: 'path', applies: 'server', doc: 'PEM certificate of https:// listeners and gRPC TLS.' },
  enable_metrics_api: { type: 'bool', default: 'true', applies: 'server', doc: 'Serve the metrics listener.' },
  metrics_mode: {
    type: 'enum',
    values: ['prometheus', 'log', 'legacy'],
    default: 'prometheus',
    applies: 'server',
    doc: 'prometheus: /metrics; log: ts_metrics.log and model_metrics.log; legacy: three counters on /metrics.',
  },
  metrics_config: { type: 'path', applies: 'server', doc: "A metrics.yaml; unset: TorchServe's default one." },
  model_metrics_auto_detect: { type: 'bool', default: 'false', applies: 'server', doc: "Record a handler's metrics the metrics.yaml does not declare." },
  disable_system_metrics: { type: 'bool', default: 'false', applies: 'server', doc: "Stop the host's CPU, memory and disk metrics." },
  metric_time_interval: { type: 'int', min: 1, max: INT_MAX, default: '60', env: false, applies: 'server', doc: 'Seconds between system metric samples.' },
  otel_traces: {
    type: 'bool',
    default: 'false',
    applies: 'server',
    own: true,
    doc: 'Export OpenTelemetry traces of predictions over OTLP/HTTP (protobuf), as OTEL_TRACES_EXPORTER=otlp does; where to and how much by the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME; docs/tracing.md). OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true turns them off whatever this says.',
  },
  otel_trace_header: {
    type: 'string',
    default: 'traceresponse',
    applies: 'server',
    own: true,
    doc: "The response header that carries a traced prediction's trace context (W3C Trace Context Level 2's traceresponse, `00-<trace id>-<span id>-<flags>` of the server's span); none: no header.",
  },
  enable_model_api: { type: 'bool', default: 'false', applies: 'server', doc: 'Allow register and unregister (--enable-model-api).' },
  disable_token_authorization: { type: 'bool', default: 'false', applies: 'server', doc: 'Serve every API without keys (--disable-token-auth).' },
  token_expiration_min: {
    type: 'number',
    min: 0,
    default: '60',
    env: 'TS_TOKEN_EXPIRATION_TIME_MIN',
    applies: 'server',
    doc: 'Minutes an inference or management key lasts.',
  },
  // TS_OPEN_INFERENCE_PROTOCOL=oip is read directly, whatever enable_envvars_config says.
  ts_open_inference_protocol: {
    type: 'bool',
    default: 'false',
    env: false,
    applies: 'server',
    doc: "The Open Inference Protocol's REST extras and gRPC service (TS_OPEN_INFERENCE_PROTOCOL=oip too).",
  },
  ts_header_key_sequence_id: {
    type: 'string',
    default: 'ts_request_sequence_id',
    applies: 'worker',
    doc: "The header carrying a stateful model's sequence id: a header name (letters, digits, _ . -), not one tsserve writes itself, nor another sequence header's.",
  },
  ts_header_key_sequence_start: {
    type: 'string',
    default: 'ts_request_sequence_start',
    applies: 'server',
    doc: 'The header starting a sequence (a header name).',
  },
  ts_header_key_sequence_end: { type: 'string', default: 'ts_request_sequence_end', applies: 'server', doc: 'The header ending a sequence (a header name).' },
  initial_worker_port: { ...PORT, default: '9000', applies: 'server', doc: "The number in the first worker's name, counting up." },
  enable_kserve_listeners: {
    type: 'bool',
    applies: 'server',
    own: true,
    doc: "KServe's listeners (8080 HTTP, 8081 gRPC); unset: on when TS_SERVICE_ENVELOPE is kserve or kservev2.",
  },
  kserve_inference_address: { type: 'address', default: 'http://0.0.0.0:8080', applies: 'server', own: true, doc: "KServe's HTTP listener." },
  kserve_grpc_inference_port: { ...PORT, default: '8081', applies: 'server', own: true, doc: "KServe's gRPC v2 listener port." },
  log_format: {
    type: 'enum',
    values: ['text', 'json'],
    default: 'text',
    applies: 'server',
    own: true,
    doc: "The server log's form: text, log4j's layout as TorchServe writes it; json, one JSON object per line of ts_log.log for log shippers (what Node's runtime prints past JavaScript goes to ts_stdio.log).",
  },
  config_snapshot_max_files: {
    type: 'int',
    min: 1,
    max: 100000,
    default: '20',
    applies: 'server',
    own: true,
    doc: 'Config snapshots kept in LOG_LOCATION/config, the oldest removed (TorchServe keeps all, each holding every model). 20 bounds the disk they take to 20 times one snapshot and still lets an operator step back through the last changes by hand; a restart reads only the newest.',
  },
  log_rolling_size_mb: {
    type: 'number',
    min: 0,
    default: '100',
    applies: 'server',
    own: true,
    doc: 'Each log file (ts_log.log, access_log.log, model_log.log, ts_metrics.log, model_metrics.log) rolls to <name>.<dd-MMM>.log.gz when it would pass this many MB, and at local midnight: TorchServe\'s log4j2.xml SizeBasedTriggeringPolicy size="100 MB" and TimeBasedTriggeringPolicy. 0: only daily.',
  },
  log_rolling_max_files: {
    type: 'int',
    min: 1,
    max: 1000,
    default: '5',
    applies: 'server',
    own: true,
    doc: 'Rolled files kept per log file, the oldest removed: TorchServe\'s log4j2.xml DefaultRolloverStrategy max="5".',
  },
  enable_envvars_config: { type: 'bool', default: 'false', env: false, applies: 'server', doc: 'Let TS_* environment variables set keys.' },
  vmargs: {
    type: 'string',
    env: false,
    applies: 'server',
    doc: 'Node.js options for the server process (tsserve --start); JVM options are skipped with a warning.',
  },
  workflow_store: { type: 'path', applies: 'ignored', doc: 'Workflows are disabled, as in TorchServe 0.12.' },
  number_of_gpu: { type: 'int', min: 0, applies: 'ignored', doc: 'tsserve runs on CPU.' },
  number_of_netty_threads: { type: 'int', min: 0, applies: 'ignored', doc: "Netty's I/O threads; Node.js has one event loop." },
  netty_client_threads: { type: 'int', min: 0, applies: 'ignored', doc: "Netty's backend threads." },
  system_metrics_cmd: { type: 'string', env: false, applies: 'ignored', doc: 'System metrics are collected in process.' },
  initial_distribution_port: { ...PORT, applies: 'ignored', doc: 'torchrun workers.' },
  model_server_home: { type: 'path', applies: 'ignored', doc: "TorchServe's install folder." },
  async_logging: { type: 'bool', applies: 'ignored', doc: 'Logs are always written asynchronously.' },
  prefer_direct_buffer: { type: 'bool', applies: 'ignored', doc: "Netty's buffers." },
  use_native_io: { type: 'bool', env: false, applies: 'ignored', doc: "Netty's transports." },
  io_ratio: { type: 'int', min: 1, max: 100, env: false, applies: 'ignored', doc: "Netty's event-loop ratio." },
  debug: { type: 'bool', env: 'TS_DEBUG', applies: 'ignored', doc: 'Workers attached by hand.' },
  cpp_log_config: { type: 'path', applies: 'ignored', doc: "TorchServe's C++ backend." },
  ipex_enable: { type: 'bool', applies: 'ignored', doc: 'Intel Extension for PyTorch.' },
  ipex_gpu_enable: { type: 'bool', applies: 'ignored', doc: 'Intel Extension for PyTorch on GPUs.' },
  cpu_launcher_enable: { type: 'bool', applies: 'ignored', doc: "PyTorch's CPU launcher." },
  cpu_launcher_args: { type: 'string', applies: 'ignored', doc: "PyTorch's CPU launcher." },
  plugins_path: { type: 'path', env: false, applies: 'ignored', doc: 'TorchServe plugins are Java jars.' },
  metrics_format: { type: 'string', applies: 'ignored', doc: "An old TorchServe key KServe's sample config.properties still sets; metrics_mode decides." },
  NUM_WORKERS: {
    type: 'int',
    min: 0,
    env: false,
    applies: 'ignored',
    doc: "Set by KServe's sample config.properties; neither TorchServe nor tsserve reads it.",
  },
};

export const KEYS: ReadonlyMap<string, KeySpec> = new Map(
  Object.entries(TABLE).map(([name, spec]) => [name, { ...spec, name, env: spec.env ?? envName(name) }]),
);

/**
 * A key's environment variable, as TorchServe names it: TS_ and the name of the key's Java
 * constant, which is the key upper-cased; a key that begins with ts_ (ts_header_key_sequence_id:
 * TS_HEADER_KEY_SEQUENCE_ID) has its TS_ once. A key whose variable is named otherwise says so (`env`).
 */
function envName(key: string): string {
  return `TS_${key.toUpperCase().replace(/^TS_/, '')}`;
}

/** The default of a key with one; a key without is a programming error. */
export function keyDefault(name: string): string {
  const value = KEYS.get(name)?.default;
  if (value === undefined) throw new Error(`config key ${name} has no default`);
  return value;
}

/** Why `value` is not allowed for `spec`, or undefined when it is. */
export function invalidValue(spec: KeySpec, value: string): string | undefined {
  const v = value.trim();
  switch (spec.type) {
    case 'int': {
      const n = Number(v);
      const ok = /^-?\d+$/.test(v) && n >= (spec.min ?? -INT_MAX) && n <= (spec.max ?? Number.MAX_SAFE_INTEGER);
      return ok ? undefined : `a whole number${range(spec)}`;
    }
    case 'number': {
      const n = Number(v);
      return v !== '' && Number.isFinite(n) && n >= (spec.min ?? -Infinity) && n <= (spec.max ?? Infinity) ? undefined : `a number${range(spec)}`;
    }
    case 'bool':
      return /^(true|false)$/i.test(v) ? undefined : 'true or false';
    case 'enum':
      return spec.values!.some((allowed) => allowed.toLowerCase() === v.toLowerCase()) ? undefined : `one of ${spec.values!.join(', ')}`;
    case 'regex':
      try {
        new RegExp(v);
        return undefined;
      } catch {
        return 'a regular expression';
      }
    case 'json':
      try {
        JSON.parse(v);
        return undefined;
      } catch {
        return 'JSON';
      }
    case 'address':
      return /^(https?:\/\/(\[[^\]]+\]|[^:/\s]+)(:\d+)?\/?|unix:\/.+)$/i.test(v)
        ? undefined
        : 'an address such as http://127.0.0.1:8080 or unix:/path/to/socket';
    default:
      return undefined;
  }
}

function range(spec: KeySpec): string {
  if (spec.min !== undefined && spec.max !== undefined) return ` from ${spec.min} to ${spec.max}`;
  if (spec.min !== undefined) return ` of at least ${spec.min}`;
  return spec.max !== undefined ? ` of at most ${spec.max}` : '';
}

/** The known key nearest to a misspelt one (Levenshtein distance at most 3), for the warning. */
export function closestKey(name: string): string | undefined {
  return closestName(name, KEYS.keys());
}

/** The name of `known` nearest to a misspelt one (Levenshtein distance at most 3). */
export function closestName(name: string, names: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = 4;
  for (const known of names) {
    const d = distance(name.toLowerCase(), known.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [known, d];
  }
  return best;
}

function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** docs/configuration.md, made from the table (npm run docs:config writes it; a test compares). */
export function configurationDoc(): string {
  const row = (k: KeySpec): string => {
    const allowed =
      k.type === 'enum'
        ? k.values!.join(', ')
        : k.type === 'int' || k.type === 'number'
          ? `${k.type === 'int' ? 'whole number' : 'number'}${range(k)}`
          : k.type;
    const where = k.applies === 'ignored' ? 'accepted, no effect' : k.applies;
    return `| \`${k.name}\`${k.own ? ' (tsserve)' : ''} | ${k.default === undefined ? '' : `\`${k.default}\``} | ${allowed} | ${k.env === false ? '' : `\`${k.env}\``} | ${where} | ${k.doc.replace(/\|/g, '\\|')} |`;
  };
  return [
    '# Configuration keys',
    '',
    '<!-- Made from src/config/keys.ts by `npm run docs:config`; src/config/keys.test.ts keeps it in sync. -->',
    '',
    'Every key tsserve reads from config.properties. A value outside what a key allows stops the start',
    'with the key, the value and what is allowed; an unknown key is a warning that names the closest',
    'known one. Environment variables apply only with `enable_envvars_config=true`. "worker" keys',
    'reach every worker; "accepted, no effect" keys are TorchServe\'s that have no meaning here.',
    '',
    '| key | default | allowed | environment | applies to | what it does |',
    '| --- | --- | --- | --- | --- | --- |',
    ...[...KEYS.values()].map(row),
    '',
  ].join('\n');
}

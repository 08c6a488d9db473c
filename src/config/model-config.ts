/**
 * @module config/model-config
 * The settings of one model version, merged as TorchServe merges them (spec §2.6): register-API
 * parameters, the archive's model-config.yaml, the `models=` JSON of config.properties, defaults.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tsError } from '../errors.js';
import { isRecord } from '../is-record.js';
import { INT_MAX, invalidValue, type KeySpec } from './keys.js';
import type { SequenceHeaders, ServerConfig } from './server-config.js';
import type { BatchKey, WorkerAndBatchSettings } from './snapshot-file.js';

export interface ModelSettings {
  batchSize: number;
  maxBatchDelay: number;
  responseTimeout: number;
  startupTimeout: number;
  minWorkers: number;
  maxWorkers: number;
  jobQueueSize: number;
  maxRetryTimeoutInSec: number;
  /** A request still queued this long after it arrived is answered 503 and never run; 0: no limit. */
  clientTimeoutInMills: number;
  /** Accept a request only when a worker is free to take it at once (else 503), nothing queues. */
  useJobTicket: boolean;
  /**
   * tsserve's own: each worker also opens the model with every core's threads, for batches that
   * run while the model's other workers idle (runtime/onnx.ts). What the YAML says; without a
   * word of it, on for a built-in handler with no batch size set (the fast path by default, at the
   * cost of a second session's memory per worker), off otherwise.
   */
  adaptiveThreads: boolean;
  /** Stateful sequence batching (the YAML's `sequenceBatching: true`); undefined: off. */
  sequence: SequenceSettings | undefined;
  /**
   * tsserve's own: with batchSize 1 because nothing set it and a built-in handler (which takes
   * any batch), a worker takes up to this many queued requests at once, without waiting: the
   * fast path by default. 1 otherwise: a handler of the user's may count on one at a time.
   */
  takeQueued: number;
  /**
   * tsserve's own: the batch size and wait chosen from measured batch times (batching/adaptive.ts),
   * up to takeQueued requests a batch: with no batch_size, for a built-in handler unless its YAML
   * says `batching: fixed`, for another handler when its YAML says `batching: adaptive`. Undefined:
   * batchSize and maxBatchDelay as TorchServe reads them.
   */
  adaptive: AdaptiveLimits | undefined;
  /** tsserve's own: how the workers follow the load between minWorkers and maxWorkers (workers/scaler.ts). */
  scaling: ScalingPolicy;
}

/** What a model's adaptive batching (batching/adaptive.ts) is held to. */
export interface AdaptiveLimits {
  /** The largest batch it may choose: builtin_handler_batch_size (the model's batch dimension may cut it). */
  readonly ceiling: number;
  /** A batch's oldest request should be answered within this, as far as batching decides it: its wait and the batch's run. */
  readonly latencyTargetMs: number;
  /** maxBatchDelay, when the model set it without batch_size: the longest a request waits for others. */
  readonly maxWaitMs: number | undefined;
}

/** When a worker is added or stopped; the model-config.yaml keys scaleWaitingPerWorker, scaleUpDelayMSec, scaleDownDelayMSec. */
export interface ScalingPolicy {
  /** Requests waiting per worker, on average over upDelayMs, above which a worker is added. */
  readonly waitingPerWorker: number;
  readonly upDelayMs: number;
  /** How long workers above minWorkers may go unneeded before they are stopped. */
  readonly downDelayMs: number;
}

export interface SequenceSettings {
  /** Sequences open at once; at least batchSize x maxWorkers, as TorchServe makes it. */
  readonly maxNumSequence: number;
  /** Requests one sequence may have waiting. */
  readonly maxSequenceJobQueueSize: number;
  /** A sequence without a request for this long is closed; 0: never. */
  readonly sequenceMaxIdleMSec: number;
  /** A sequence this old takes no more requests; 0: no limit. */
  readonly sequenceTimeoutMSec: number;
  readonly headers: SequenceHeaders;
}

/** The settings TorchServe's describe answer and its config snapshots both carry, in their order. */
export function workerAndBatchSettings(s: ModelSettings): WorkerAndBatchSettings {
  return {
    minWorkers: s.minWorkers,
    maxWorkers: s.maxWorkers,
    batchSize: s.batchSize,
    maxBatchDelay: s.maxBatchDelay,
    responseTimeout: s.responseTimeout,
    startupTimeout: s.startupTimeout,
  };
}

/**
 * The batch keys a model left unset, as far as its settings still tell: those of a model that
 * batches adaptively (a snapshot keeps them unset: snapshot-file.ts's SnapshotModel.unset).
 */
export function unsetBatchKeys(s: ModelSettings): BatchKey[] {
  if (!s.adaptive) return [];
  return s.adaptive.maxWaitMs === undefined ? ['batchSize', 'maxBatchDelay'] : ['batchSize'];
}

/** What a registration asked for; undefined means "not given". */
export interface RegisterParams {
  batchSize?: number | undefined;
  maxBatchDelay?: number | undefined;
  responseTimeout?: number | undefined;
  startupTimeout?: number | undefined;
  /** min = max = this, unless the YAML sets a valid pair. */
  initialWorkers?: number | undefined;
  /** Start-up loading: the `models=` JSON's minWorkers/maxWorkers come before initialWorkers. */
  atStartup?: boolean | undefined;
}

type YamlSpec = Pick<KeySpec, 'type' | 'min' | 'values'>;
const COUNT = { type: 'int', min: 0 } as const;
const AT_LEAST_ONE = { type: 'int', min: 1 } as const;
const FLAG = { type: 'bool' } as const;
/** A scaling key: the server's scale_* keys' range, a count or milliseconds a Node timer takes. */
const SCALE = { type: 'int', min: 0, max: INT_MAX } as const;

/** The model-config.yaml keys the server reads (spec 2.5, and tsserve's adaptiveThreads); any other key is the handler's. */
const YAML_KEYS: Record<string, YamlSpec> = {
  minWorkers: COUNT,
  maxWorkers: COUNT,
  batchSize: AT_LEAST_ONE,
  maxBatchDelay: COUNT,
  responseTimeout: AT_LEAST_ONE,
  startupTimeout: AT_LEAST_ONE,
  maxRetryTimeoutInSec: COUNT,
  clientTimeoutInMills: COUNT,
  jobQueueSize: AT_LEAST_ONE,
  useJobTicket: FLAG,
  sequenceBatching: FLAG,
  sequenceMaxIdleMSec: COUNT,
  sequenceTimeoutMSec: COUNT,
  maxSequenceJobQueueSize: AT_LEAST_ONE,
  maxNumSequence: AT_LEAST_ONE,
  continuousBatching: FLAG,
  asyncCommunication: FLAG,
  useVenv: FLAG,
  adaptiveThreads: FLAG,
  sharedWorker: FLAG,
  batching: { type: 'enum', values: ['adaptive', 'fixed'] },
  latencyTargetMs: AT_LEAST_ONE,
  scaleWaitingPerWorker: SCALE,
  scaleUpDelayMSec: SCALE,
  scaleDownDelayMSec: SCALE,
  parallelLevel: COUNT,
  deviceType: { type: 'enum', values: ['cpu', 'gpu'] },
  parallelType: { type: 'enum', values: ['pp', 'tp', 'pptp', 'custom'] },
};

/**
 * What a model-config.yaml says that the server cannot use: a key it reads with a value of the
 * wrong kind (TorchServe skips such a value with a warning, and so does tsserve, naming the key,
 * the value and what is allowed). Keys it does not read are the handler's, and pass unremarked.
 */
export function yamlWarnings(yaml: Record<string, unknown>, file: string): string[] {
  return Object.entries(yaml).flatMap(([key, value]) => {
    const spec = YAML_KEYS[key];
    if (!spec) return [];
    const why = isScalar(value) ? invalidValue({ ...spec, name: key, env: false, applies: 'server', doc: '' }, String(value)) : describeKind(spec);
    return why ? [`${file}: ${key}: ${JSON.stringify(value)} is not allowed (${key} is ${why}); the default is used`] : [];
  });
}

function isScalar(value: unknown): value is string | number | boolean {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

function describeKind(spec: YamlSpec): string {
  return spec.type === 'bool' ? 'true or false' : spec.type === 'enum' ? `one of ${spec.values!.join(', ')}` : 'a whole number';
}

/** The archive's model-config YAML; the parser is loaded only for an archive that has one. */
export async function readModelYaml(modelDir: string, file: string | undefined): Promise<Record<string, unknown>> {
  if (!file) return {};
  try {
    const { parse } = await import('yaml');
    const parsed: unknown = parse(readFileSync(join(modelDir, file), 'utf8'));
    return isRecord(parsed) ? parsed : {};
  } catch (err) {
    throw tsError('TSS_ERR_ARCHIVE_INVALID', `Invalid model config ${file}: ${(err as Error).message}`);
  }
}

/**
 * An adaptive model's latencyTargetMs unless its YAML says: TorchServe's default maxBatchDelay.
 * A batch's oldest request waits for more only while its wait and the batch's run stay within it.
 */
const DEFAULT_LATENCY_TARGET_MS = 100;

export function resolveSettings(
  server: ServerConfig,
  modelName: string,
  version: string,
  yaml: Record<string, unknown>,
  params: RegisterParams,
  hasYaml: boolean,
  builtinHandler: boolean,
): ModelSettings {
  const json = server.models[modelName]?.[version] ?? {};
  const yamlInt = (k: string): number | undefined => positiveInt(yaml[k], k === 'maxBatchDelay' || k === 'maxWorkers');
  const jsonInt = (k: string): number | undefined => positiveInt(json[k], false);
  const timeout = (k: 'responseTimeout' | 'startupTimeout', api: number | undefined, dflt: number): number =>
    // TorchServe: with a YAML, its value (default 120) beats the API value.
    hasYaml ? (yamlInt(k) ?? 120) : (jsonInt(k) ?? api ?? dflt);
  const workers = yamlWorkers(yaml) ??
    (params.atStartup ? jsonWorkers(json) : undefined) ?? {
      min: params.initialWorkers ?? 0,
      max: params.initialWorkers ?? 0,
    };
  const configuredBatch = params.batchSize ?? yamlInt('batchSize') ?? jsonInt('batchSize');
  const batchSize = configuredBatch ?? 1;
  const fastDefaults = configuredBatch === undefined && builtinHandler && yaml.sequenceBatching !== true;
  const adaptive =
    configuredBatch === undefined && yaml.sequenceBatching !== true && (yaml.batching === 'adaptive' || (fastDefaults && yaml.batching !== 'fixed'));
  const takeQueued = adaptive ? server.builtinHandlerBatchSize : 1;
  const configuredDelay = params.maxBatchDelay ?? yamlInt('maxBatchDelay') ?? jsonInt('maxBatchDelay');
  // The model's own scaling keys, from its YAML or the models= JSON; 0 is a value here, and above
  // SCALE's maximum is refused, as yamlWarnings says (a longer timer would fire at once).
  const count = (k: string): number | undefined => positiveInt(yaml[k], true, SCALE.max) ?? positiveInt(json[k], true, SCALE.max);
  const waitingPerWorker = count('scaleWaitingPerWorker') ?? server.scaling.waitingPerWorker;
  return {
    batchSize,
    takeQueued,
    adaptive: adaptive
      ? { ceiling: takeQueued, latencyTargetMs: yamlInt('latencyTargetMs') ?? DEFAULT_LATENCY_TARGET_MS, maxWaitMs: configuredDelay }
      : undefined,
    scaling: {
      waitingPerWorker: waitingPerWorker > 0 ? waitingPerWorker : Math.max(batchSize, takeQueued),
      upDelayMs: count('scaleUpDelayMSec') ?? server.scaling.upDelayMs,
      downDelayMs: count('scaleDownDelayMSec') ?? server.scaling.downDelayMs,
    },
    maxBatchDelay: configuredDelay ?? 100,
    responseTimeout: timeout('responseTimeout', params.responseTimeout, server.defaultResponseTimeout),
    startupTimeout: timeout('startupTimeout', params.startupTimeout, server.defaultStartupTimeout),
    minWorkers: workers.min,
    maxWorkers: workers.max,
    jobQueueSize: yamlInt('jobQueueSize') ?? server.jobQueueSize,
    maxRetryTimeoutInSec: yamlInt('maxRetryTimeoutInSec') ?? 300,
    clientTimeoutInMills: yamlInt('clientTimeoutInMills') ?? server.defaultQueueTimeout * 1000,
    useJobTicket: yaml.useJobTicket === true,
    adaptiveThreads: typeof yaml.adaptiveThreads === 'boolean' ? yaml.adaptiveThreads : fastDefaults,
    sequence:
      yaml.sequenceBatching === true
        ? {
            maxNumSequence: Math.max(yamlInt('maxNumSequence') ?? 1, batchSize * Math.max(1, workers.max)),
            maxSequenceJobQueueSize: yamlInt('maxSequenceJobQueueSize') ?? 1,
            sequenceMaxIdleMSec: yamlInt('sequenceMaxIdleMSec') ?? 0,
            sequenceTimeoutMSec: yamlInt('sequenceTimeoutMSec') ?? 0,
            headers: server.sequenceHeaders,
          }
        : undefined,
  };
}

/**
 * Cuts minWorkers and maxWorkers to `limit` (max_workers_per_model), and says what it did; undefined
 * when they are within it. A count from configuration is cut, not refused: no client is there to
 * read a refusal, a start-up model should serve, and a snapshot from a larger machine restore.
 */
export function limitWorkers(settings: ModelSettings, limit: number): string | undefined {
  if (settings.minWorkers <= limit && settings.maxWorkers <= limit) return undefined;
  const asked = `minWorkers ${settings.minWorkers}, maxWorkers ${settings.maxWorkers}`;
  settings.minWorkers = Math.min(settings.minWorkers, limit);
  settings.maxWorkers = Math.min(settings.maxWorkers, limit);
  return `${asked} is more than max_workers_per_model; ${limit} workers at most`;
}

/**
 * The YAML's minWorkers/maxWorkers when they make a valid pair: maxWorkers at least minWorkers and
 * at least 1. minWorkers 0 is tsserve's scale to zero (the first request starts a worker), where
 * TorchServe raises it to 1; minWorkers 0 with maxWorkers 0 would be a model that never serves.
 */
function yamlWorkers(yaml: Record<string, unknown>): { min: number; max: number } | undefined {
  const min = positiveInt(yaml.minWorkers, true);
  const max = positiveInt(yaml.maxWorkers, true);
  return min !== undefined && max !== undefined && max >= Math.max(1, min) ? { min, max } : undefined;
}

function jsonWorkers(json: Record<string, unknown>): { min: number; max: number } | undefined {
  const min = positiveInt(json.minWorkers, true);
  if (min === undefined) return undefined;
  return { min, max: Math.max(min, positiveInt(json.maxWorkers, true) ?? min) };
}

/** An int up to `max` (by default invalidValue's, so that a value it warns of is not used). */
function positiveInt(v: unknown, zeroAllowed: boolean, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n > max) return undefined;
  return n > 0 || (zeroAllowed && n === 0) ? n : undefined;
}

/**
 * @module workers/worker-factory
 * The one place a worker process is made for a model: its load message (what the worker needs to
 * open the model), its thread budget and timeouts, and the wiring of its states, output and
 * metrics into the server's log and metrics. Every model's pool gets its workers from here,
 * whichever way the model was registered.
 */
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { ValidManifest } from '../archive/manifest.js';
import type { ModelSettings } from '../config/model-config.js';
import { envelopeOf, type ServerConfig } from '../config/server-config.js';
import type { Loggers } from '../log/loggers.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import type { Tracing } from '../metrics/tracing.js';
import { VERSION } from '../version.js';
import type { LoadMessage } from '../protocol/messages.js';
import { threadBudget, WorkerProcess, workerEnvironment, type WorkerOptions } from './worker-process.js';
import { SharedHosts } from './shared-hosts.js';
import { largestBatch, type PoolDeps } from './worker-pool.js';
import type { ScaleEvent } from './scaler.js';

export interface WorkerFactoryDeps {
  readonly config: ServerConfig;
  readonly loggers: Loggers;
  readonly metrics: MetricsRegistry;
  /** The shared worker processes (sharedHosts); none: every worker has a process of its own. */
  readonly hosts?: SharedHosts;
}

/** The server's shared worker processes, made from its configuration; the server ends them when it stops. */
export function sharedHosts(config: ServerConfig, loggers: Loggers): SharedHosts {
  return new SharedHosts({
    modelsPerHost: config.sharedWorkerModels,
    spreadOver: availableParallelism(),
    // Small models: one onnxruntime thread each, so that a host's models never ask for more than a core.
    intraOpThreads: 1,
    nice: config.workerNice,
    env: workerEnvironment(process.env, config.blacklistEnvVars),
    maxResponseSize: config.maxResponseSize,
    onOutput: (host, line, stream) => loggers.model(host, stream, line),
    log: (message) => loggers.server.info(message),
  });
}

/**
 * Whether `model`'s workers live in a shared host: its model-config.yaml's sharedWorker, else
 * whether its file is under shared_worker_model_mb. Never under worker_permission: Node's
 * permission model is a process's, and opens one model's directory to it.
 */
export function sharesHost(config: ServerConfig, model: WorkerModel): boolean {
  if (config.workerPermission) return false;
  const asked = model.spec.yaml.sharedWorker;
  if (typeof asked === 'boolean') return asked;
  const file = model.spec.manifest.model.serializedFile;
  if (config.sharedWorkerModelMb <= 0 || !file) return false;
  try {
    return statSync(join(model.spec.dir, file)).size < config.sharedWorkerModelMb * 2 ** 20;
  } catch {
    return false;
  }
}

/** What a worker is made from: a model version (models/model.ts's Model). */
export interface WorkerModel {
  readonly name: string;
  readonly version: string;
  readonly settings: ModelSettings;
  readonly spec: { readonly dir: string; readonly manifest: ValidManifest; readonly handler: string; readonly yaml: Record<string, unknown> };
}

/** For each model, what its pool needs: a way to make workers, and where its events go. */
export function workerFactory({ config, loggers, metrics, hosts }: WorkerFactoryDeps): (model: WorkerModel) => PoolDeps {
  const log = loggers.server;
  let nextWorkerPort = config.initialWorkerPort;
  const env = workerEnvironment(process.env, config.blacklistEnvVars);
  return (model) => {
    const shared = hosts && sharesHost(config, model) ? hosts : undefined;
    return {
      sharesHost: shared !== undefined,
      spawn: () => {
        const id = String(nextWorkerPort++);
        const name = `W-${id}-${model.name}_${model.version}`;
        const worker = new WorkerProcess({
          id,
          load: loadMessage(config, model, id),
          hosts: shared,
          ...threadBudget(model.settings),
          startupTimeoutMs: model.settings.startupTimeout * 1000,
          responseTimeoutMs: model.settings.responseTimeout * 1000,
          nice: config.workerNice,
          permission: config.workerPermission,
          env,
          onOutput: (line, stream) => loggers.model(name, stream, line),
          onMetrics: (m, requestIds) => metrics.handlerMetrics(m, requestIds),
          onBatchHandled: (ms) => metrics.workerThreadTime(ms),
          onStages: (stages, requests) => metrics.stagesRan(model.name, model.version, stages, requests),
          traceBatch: batchTracer(metrics.tracing, model, id),
        });
        worker.on('state', (state, previous) => {
          log.info(`${name} State change ${previous} -> ${state}`);
          if (state !== 'MODEL_LOADED') return;
          const ms = Date.now() - worker.startTime.getTime();
          metrics.workerLoaded(name, ms);
          metrics.workerStarted(model.name, model.version, ms);
        });
        worker.on('response-timeout', () => metrics.responseTimedOut(model.name, model.version));
        return worker;
      },
      onRestart: () => metrics.workerRestarted(model.name, model.version),
      onBatch: (jobs) => metrics.batchFormed(model.name, model.version, jobs),
      log: (message) => log.info(`${model.name}_${model.version}: ${message}`),
      onScale: (event) => {
        metrics.scaled(model.name, model.version, event.direction, event.reason, Math.abs(event.to - event.from));
        if (event.bound) metrics.scaleLimitedBy(model.name, model.version, event.bound);
        log.info(`${model.name}_${model.version}: ${scaleMessage(event)}`);
      },
    };
  };
}

/** With tracing on, what starts the span of a batch the worker `workerId` runs; undefined with it off. */
function batchTracer(tracing: Tracing | undefined, model: WorkerModel, workerId: string): WorkerOptions['traceBatch'] {
  if (!tracing) return undefined;
  return (jobs, at) => {
    const traces = jobs.flatMap((j) => (j.trace ? [j.trace] : []));
    return traces.length > 0 ? tracing.startBatch(model, workerId, traces, at) : undefined;
  };
}

/** The log line of a scaler's decision, with its reason. */
export function scaleMessage(e: ScaleEvent): string {
  const why: Record<ScaleEvent['reason'], string> = {
    waiting: `requests waited above the target per worker; ${e.wanted} wanted`,
    queue_full: `the queue was full and refused requests; ${e.wanted} wanted`,
    cold_start: 'a request arrived and the model had no worker',
    idle: `no more than ${e.wanted} needed over the scale-down delay`,
  };
  const held = e.bound ? `, held by ${e.bound}` : '';
  const what = e.to === e.from ? `Workers stay at ${e.to}` : `Workers scaled ${e.direction} from ${e.from} to ${e.to}`;
  return `${what} (${e.reason}: ${why[e.reason]}${held})`;
}

function loadMessage(config: ServerConfig, model: WorkerModel, key: string): LoadMessage {
  return {
    kind: 'load',
    key,
    modelName: model.name,
    modelDir: model.spec.dir,
    manifest: model.spec.manifest,
    handler: model.spec.handler,
    batchSize: model.settings.batchSize,
    yamlConfig: model.spec.yaml,
    decodeInput: config.decodeInputRequest,
    limitMaxImagePixels: config.limitMaxImagePixels,
    envelope: envelopeOf(config, model.spec.manifest.model.envelope),
    sequenceIdHeader: config.sequenceHeaders.id,
    serverVersion: VERSION,
    largestBatch: largestBatch(model.settings),
    maxResponseSize: config.maxResponseSize,
    responseTimeoutMs: model.settings.responseTimeout * 1000,
  };
}

/**
 * @module workers/worker-factory
 * The one place a worker process is made for a model: its load message (what the worker needs to
 * open the model), its thread budget and timeouts, and the wiring of its states, output and
 * metrics into the server's log and metrics. Every model's pool gets its workers from here,
 * whichever way the model was registered.
 */
import type { ValidManifest } from '../archive/manifest.js';
import type { ModelSettings } from '../config/model-config.js';
import type { ServerConfig } from '../config/server-config.js';
import type { Loggers } from '../log/loggers.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import type { Tracing } from '../metrics/tracing.js';
import { VERSION } from '../version.js';
import type { LoadMessage } from '../protocol/messages.js';
import { threadBudget, WorkerProcess, workerEnvironment, type WorkerOptions } from './worker-process.js';
import { largestBatch, type PoolDeps } from './worker-pool.js';
import type { ScaleEvent } from './scaler.js';

export interface WorkerFactoryDeps {
  readonly config: ServerConfig;
  readonly loggers: Loggers;
  readonly metrics: MetricsRegistry;
}

/** What a worker is made from: a model version (models/model.ts's Model). */
export interface WorkerModel {
  readonly name: string;
  readonly version: string;
  readonly settings: ModelSettings;
  readonly spec: { readonly dir: string; readonly manifest: ValidManifest; readonly handler: string; readonly yaml: Record<string, unknown> };
}

/** For each model, what its pool needs: a way to make workers, and where its events go. */
export function workerFactory({ config, loggers, metrics }: WorkerFactoryDeps): (model: WorkerModel) => PoolDeps {
  const log = loggers.server;
  let nextWorkerPort = config.initialWorkerPort;
  const env = workerEnvironment(process.env, config.blacklistEnvVars);
  return (model) => ({
    spawn: () => {
      const id = String(nextWorkerPort++);
      const name = `W-${id}-${model.name}_${model.version}`;
      const worker = new WorkerProcess({
        id,
        load: loadMessage(config, model),
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
  });
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

function loadMessage(config: ServerConfig, model: WorkerModel): LoadMessage {
  return {
    kind: 'load',
    modelName: model.name,
    modelDir: model.spec.dir,
    manifest: model.spec.manifest,
    handler: model.spec.handler,
    batchSize: model.settings.batchSize,
    yamlConfig: model.spec.yaml,
    decodeInput: config.decodeInputRequest,
    limitMaxImagePixels: config.limitMaxImagePixels,
    envelope: config.serviceEnvelope ?? model.spec.manifest.model.envelope,
    sequenceIdHeader: config.sequenceHeaders.id,
    serverVersion: VERSION,
    largestBatch: largestBatch(model.settings),
    maxResponseSize: config.maxResponseSize,
  };
}

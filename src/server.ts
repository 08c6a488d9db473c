/**
 * @module server
 * The composition root: one ServerConfig in, a running server out. It builds the registry, the
 * metrics and the worker factory, loads the start-up models, and opens the three listeners.
 * Nothing below it reaches for a singleton; everything it made is passed down.
 */
import { readdirSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { startupWorkers, type ListenAddress, type ServerConfig } from './config/server-config.js';
import { inferenceRoutes } from './http/inference.js';
import { createListener } from './http/listener.js';
import { managementRoutes } from './http/management.js';
import { metricsRoutes } from './http/metrics.js';
import { createLoggers, type Loggers } from './log/loggers.js';
import { MetricsRegistry } from './metrics/registry.js';
import { VERSION } from './version.js';
import { WorkerProcess } from './worker/worker.js';
import type { Model } from './wlm/model.js';
import { loadModel, type LoaderDeps } from './wlm/model-loader.js';
import { ModelRegistry } from './wlm/model-registry.js';
import type { PoolDeps } from './wlm/worker-pool.js';

export interface RunningServer {
  readonly config: ServerConfig;
  readonly registry: ModelRegistry;
  readonly urls: { readonly inference: string; readonly management: string; readonly metrics: string | undefined };
  close(): Promise<void>;
}

const DOWNLOAD_LIMIT_BYTES = 2 * 1024 ** 3;
const DOWNLOAD_TIMEOUT_MS = 10 * 60_000;

export async function startServer(config: ServerConfig, loggers: Loggers = createLoggers(config.logLocation)): Promise<RunningServer> {
  const log = loggers.server;
  const metrics = new MetricsRegistry(config.metricsMode);
  const registry = new ModelRegistry();
  let nextWorkerPort = 9000;

  const poolDeps = (model: Model): PoolDeps => ({
    spawn: () => {
      const id = String(nextWorkerPort++);
      const name = `W-${id}-${model.name}_${model.version}`;
      const worker = new WorkerProcess({
        id,
        load: {
          kind: 'load',
          modelName: model.name,
          modelDir: model.spec.dir,
          manifest: model.spec.manifest,
          handler: model.spec.handler,
          batchSize: model.settings.batchSize,
          yamlConfig: model.spec.yaml,
          decodeInput: config.decodeInputRequest,
          serverVersion: VERSION,
        },
        intraOpThreads: Math.max(1, Math.floor(cpus().length / Math.max(1, model.settings.maxWorkers))),
        startupTimeoutMs: model.settings.startupTimeout * 1000,
        responseTimeoutMs: model.settings.responseTimeout * 1000,
        maxResponseSize: config.maxResponseSize,
        onOutput: (line, stream) => loggers.model(name, stream, line),
        onMetrics: (m) => metrics.handlerMetrics(m),
      });
      worker.on('state', (state, previous) => {
        log.info(`${name} State change ${previous} -> ${state}`);
        if (state === 'MODEL_LOADED') metrics.workerLoaded(name, Date.now() - worker.startTime.getTime());
      });
      return worker;
    },
    log: (message) => log.info(`${model.name}_${model.version}: ${message}`),
  });

  const loader: LoaderDeps = {
    server: config,
    locate: {
      modelStore: config.modelStore,
      allowedUrls: config.allowedUrls,
      maxDownloadBytes: DOWNLOAD_LIMIT_BYTES,
      downloadTimeoutMs: DOWNLOAD_TIMEOUT_MS,
    },
    poolDeps,
  };

  await loadStartupModels(config, loader, registry, loggers);

  // APIs whose addresses name the same socket share one listener, as TorchServe's "ALL" listener.
  // Port 0 means "any free port", so it never names the same socket twice.
  const listeners = new Map<string, { app: FastifyInstance; address: ListenAddress }>();
  const listenerFor = (address: ListenAddress, api: string): FastifyInstance => {
    const key = address.port === 0 && address.scheme !== 'unix' ? `${address.raw}#${api}` : address.raw;
    let entry = listeners.get(key);
    if (!entry) {
      entry = { app: createListener({ config, metrics, loggers }), address };
      listeners.set(key, entry);
    }
    urlOf.set(api, key);
    return entry.app;
  };
  const urlOf = new Map<string, string>();
  await listenerFor(config.inferenceAddress, 'inference').register(inferenceRoutes, { config, registry, metrics });
  await listenerFor(config.managementAddress, 'management').register(managementRoutes, { config, registry, loader, onChange: () => {} });
  if (config.enableMetricsApi) await listenerFor(config.metricsAddress, 'metrics').register(metricsRoutes, { metrics });

  const bound = new Map<string, string>();
  for (const [key, { app, address }] of listeners) bound.set(key, await listen(app, address));
  const url = (api: string): string | undefined => bound.get(urlOf.get(api) ?? '');

  let closing: Promise<void> | undefined;
  return {
    config,
    registry,
    urls: { inference: url('inference')!, management: url('management')!, metrics: url('metrics') },
    close() {
      closing ??= (async () => {
        // Stop accepting first; fastify's close waits for the requests already in flight.
        await Promise.all([...listeners.values()].map(({ app }) => app.close()));
        await Promise.all(registry.all().map((m) => m.close()));
        loggers.flush();
      })();
      return closing;
    },
  };
}

async function listen(app: FastifyInstance, address: ListenAddress): Promise<string> {
  if (address.scheme === 'unix') {
    await app.listen({ path: address.path! });
    return `unix:${address.path}`;
  }
  if (address.scheme === 'https') throw new Error(`https listeners are not supported yet: ${address.raw}`);
  await app.listen({ host: address.host, port: address.port });
  const bound = app.server.address();
  const port = typeof bound === 'object' && bound ? bound.port : address.port;
  return `http://${address.host.includes(':') ? `[${address.host}]` : address.host}:${port}`;
}

/** `load_models` / `--models`: `all` or `name=file` items. Failures are logged and skipped. */
async function loadStartupModels(config: ServerConfig, loader: LoaderDeps, registry: ModelRegistry, loggers: Loggers): Promise<void> {
  const items = config.loadModels.length === 1 && config.loadModels[0]!.toLowerCase() === 'all'
    ? storeEntries(config.modelStore)
    : config.loadModels;
  for (const item of items) {
    const eq = item.indexOf('=');
    const [modelName, url] = eq > 0 ? [item.slice(0, eq), item.slice(eq + 1)] : [undefined, item];
    try {
      const model = await loadModel({ url, modelName, loadedAtStartup: true, initialWorkers: startupWorkers(config), atStartup: true }, loader);
      registry.add(model);
      // Workers start in the background; requests that arrive meanwhile wait in the queue.
      void model.scale(model.settings.minWorkers, model.settings.maxWorkers).then((r) => {
        if (!r.ok) loggers.server.error(`Failed to start workers for ${model.name}: ${r.error.message}`);
      });
    } catch (err) {
      loggers.server.error(`Failed to load model ${item}: ${(err as Error).message}`);
    }
  }
}

function storeEntries(store: string | undefined): string[] {
  if (!store) return [];
  return readdirSync(store).filter((name) => {
    if (name.startsWith('.')) return false;
    return statSync(join(store, name)).isDirectory() || /\.(mar|model|tar\.gz)$/i.test(name);
  }).sort();
}

/**
 * The in-process tier's server: the real listeners (http/listener.ts with the inference,
 * management and metrics routes), registry, registration and metrics, built in this process and
 * called with Fastify's `inject`, no port opened. Only the worker is a stand-in (fake-worker.ts,
 * behind the pool's spawn seam): routes, parameters, admission, queues and errors are the
 * server's own, answered in milliseconds. What needs a real process (a handler, a crash, a
 * signal, a port) stays in test/ and test/faults/.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { Test } from 'tap';
import { type ArchiveOptions, createArchive } from '../../src/archive/write.js';
import { loadServerConfig, type ServerConfig } from '../../src/config/server-config.js';
import { inferenceRoutes } from '../../src/http/inference.js';
import { createListener } from '../../src/http/listener.js';
import { managementRoutes } from '../../src/http/management.js';
import { metricsRoutes } from '../../src/http/metrics.js';
import { createLoggers } from '../../src/log/loggers.js';
import { MetricsRegistry } from '../../src/metrics/registry.js';
import { ModelRegistry } from '../../src/models/model-registry.js';
import { ModelService } from '../../src/models/model-service.js';
import { registerStartupModels, startupOutcome } from '../../src/models/registration.js';
import { FakeWorker } from './fake-worker.js';

export interface InProcessServer {
  readonly config: ServerConfig;
  readonly registry: ModelRegistry;
  /** The one model service the management routes call; a test may follow its events. */
  readonly service: ModelService;
  readonly store: string;
  /** Every worker the pools have made, in order. */
  readonly workers: FakeWorker[];
  /** What the server logged (warnings and up). */
  readonly log: string[];
  inference(request: InjectOptions): Promise<LightMyRequestResponse>;
  management(request: InjectOptions): Promise<LightMyRequestResponse>;
  metrics(request: InjectOptions): Promise<LightMyRequestResponse>;
}

/** Registers `name`.mar with one worker, synchronously, as the memory budget's tests' models are. */
export function registerModel(server: InProcessServer, name: string): Promise<LightMyRequestResponse> {
  return server.management({ method: 'POST', url: `/models?url=${name}.mar&initial_workers=1&synchronous=true` });
}

/**
 * A server with `properties` added to its config.properties, whose model store holds `models`
 * (each an archive of a built-in handler, named `<name>.mar`); those `load_models` names serve
 * when it answers.
 */
export async function inProcessServer(
  t: Test,
  opts: {
    properties?: Record<string, string>;
    models?: string[];
    prepare?: (store: string) => void;
    /** Environment variables the configuration reads. */
    env?: Record<string, string>;
    /** How often the memory budget looks at the loaded models' memory (GROWTH_CHECK_MS, a second, without it). */
    growthCheckMs?: number;
  } = {},
): Promise<InProcessServer> {
  const dir = tempDir(t);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  for (const name of opts.models ?? []) storeArchive(store, name);
  opts.prepare?.(store);
  const config = configWith(dir, { model_store: store, enable_model_api: 'true', default_workers_per_model: '1', ...opts.properties }, opts.env);
  const log: string[] = [];
  const loggers = createLoggers(join(dir, 'logs'), { level: 'warn', destination: { write: (line) => log.push(line) } });
  const metrics = new MetricsRegistry(config.metricsMode, { lines: () => {}, warn: (message) => log.push(message) });
  const registry = new ModelRegistry();
  const workers: FakeWorker[] = [];
  const service = new ModelService({
    config,
    registry,
    growthCheckMs: opts.growthCheckMs,
    loader: {
      server: config,
      locate: { modelStore: config.modelStore, allowedUrls: config.allowedUrls, maxDownloadBytes: config.maxDownloadSize, downloadTimeoutMs: 1000 },
      // As workers/worker-factory.ts wires a pool, with a fake worker for the process.
      poolDeps: (model) => ({
        spawn: () => {
          const worker = new FakeWorker(String(9000 + workers.length), 100_000 + workers.length);
          workers.push(worker);
          return worker.asWorkerProcess();
        },
        onRestart: () => metrics.workerRestarted(model.name, model.version),
        onBatch: (jobs) => metrics.batchFormed(model.name, model.version, jobs),
        log: (message) => log.push(message),
      }),
      log: (message) => log.push(message),
      // A fake worker imports nothing: no node_modules links in the model's directory.
      linkPackages: false,
    },
  });
  service.on((event) => metrics.followModels(event));
  const listener = (): FastifyInstance => createListener({ config, metrics, loggers }).app;
  const inference = listener();
  await inference.register(inferenceRoutes, { config, registry, metrics, tokens: undefined });
  const management = listener();
  await management.register(managementRoutes, { tokens: undefined, service });
  const metricsApi = listener();
  await metricsApi.register(metricsRoutes, { metrics });
  await startupOutcome(await registerStartupModels(config, service, loggers.server));
  // A listening server keeps its process alive while a queue's deadline (an unref'd timer) runs
  // out; with no port open, this does.
  const alive = setInterval(() => {}, 60_000);
  t.teardown(async () => {
    clearInterval(alive);
    for (const worker of workers) worker.release();
    await Promise.all(registry.all().map((m) => m.close()));
    await Promise.all([inference.close(), management.close(), metricsApi.close()]);
    loggers.close();
  });
  return {
    config,
    registry,
    service,
    store,
    workers,
    log,
    inference: (request) => inference.inject(request),
    management: (request) => management.inject(request),
    metrics: (request) => metricsApi.inject(request),
  };
}

/**
 * A temporary folder removed when the test ends (test/helpers.ts has one too, but importing that
 * module loads the built server from dist/, which this tier neither needs nor waits for).
 */
export function tempDir(t: Test, prefix = 'tsserve-unit-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The configuration a server with this config.properties in `dir` reads. */
export function configWith(dir: string, properties: Record<string, string>, env: Record<string, string> = {}): ServerConfig {
  const file = join(dir, 'config.properties');
  writeFileSync(
    file,
    `${Object.entries(properties)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n')}\n`,
  );
  return loadServerConfig({ tsConfig: file, ncs: true }, { LOG_LOCATION: join(dir, 'logs'), ...env }, dir);
}

/**
 * The bytes of each plain `<name>.mar` (no `extra`) this process has built: the archiver stages
 * its files in a folder of its own and removes it, most of a server's set-up on a busy disk, and a
 * file's tests build the same few archives again and again (test/unit/model-memory: 21 of 4).
 */
const plainArchives = new Map<string, Buffer>();

/**
 * `<name>.mar` in `store`: a built-in handler (nothing to compile) and a small file as its model;
 * `extra` as the archiver's options (another version, a model-config.yaml).
 */
export function storeArchive(store: string, name: string, extra: Partial<ArchiveOptions> = {}): string {
  const plain = Object.keys(extra).length === 0;
  const built = plain ? plainArchives.get(name) : undefined;
  if (built) {
    const path = join(store, `${name}.mar`);
    writeFileSync(path, built);
    return path;
  }
  const model = join(store, '..', `${name}.onnx`);
  writeFileSync(model, 'not read: the fake worker loads nothing');
  const path = createArchive({ modelName: name, version: '1.0', handler: 'image_classifier', serializedFile: model, exportPath: store, force: true, ...extra });
  if (plain) plainArchives.set(name, readFileSync(path));
  return path;
}

/** A response's TorchServe error body. */
export function errorOf(res: LightMyRequestResponse): { code: number; type: string; message: string } {
  return res.json();
}

/**
 * @module server
 * The composition root: one ServerConfig in, a running server out. It builds the registry, the
 * metrics and the worker factory, loads the start-up models, and opens the three listeners.
 * Nothing below it reaches for a singleton; everything it made is passed down.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { envelopeOf, type ListenAddress, type ServerConfig } from './config/server-config.js';
import { removeStalePartials } from './archive/download.js';
import { removeStaleExtractions } from './archive/extract.js';
import { existingInside } from './archive/inside.js';
import { TokenStore } from './auth/tokens.js';
import { tokenRoutes } from './http/auth.js';
import { inferenceRoutes } from './http/inference.js';
import { KSERVE_ROOT, kserveListenerRoutes } from './http/kserve.js';
import { listenGrpc } from './grpc/listener.js';
import type { GrpcDeps } from './grpc/deps.js';
import { checkListeners, explainListenError } from './http/listen-check.js';
import { createListener } from './http/listener.js';
import { refuseBeforeRouting } from './http/raw-refusal.js';
import { tlsMaterial, type TlsMaterial } from './http/tls.js';
import { SLOW_MS, warmFrontEnd } from './http/warm-up.js';
import { managementRoutes } from './http/management.js';
import { metricsRoutes } from './http/metrics.js';
import { createLoggers, type Loggers } from './log/loggers.js';
import { startUpSummary, SUMMARY_MESSAGE } from './log/start-up-summary.js';
import { readMetricsConfig } from './metrics/definitions.js';
import { MetricsRegistry } from './metrics/registry.js';
import { startSystemMetrics } from './metrics/system.js';
import type { Tracing } from './metrics/tracing.js';
import { snapshotDir } from './config/snapshot-file.js';
import { SnapshotWriter } from './snapshot/snapshot.js';
import type { LoaderDeps } from './models/model-loader.js';
import { ModelRegistry } from './models/model-registry.js';
import { ModelService } from './models/model-service.js';
import { continueUnlessStopped, registerStartupModels, restoreSnapshot, startupOutcome, type StartupOutcome } from './models/registration.js';
import { sharedHosts, workerFactory } from './workers/worker-factory.js';
import type { SharedHosts } from './workers/shared-hosts.js';
import { batchWaitMs } from './workers/worker-pool.js';
import { VERSION } from './version.js';

export interface RunningServer {
  readonly config: ServerConfig;
  readonly registry: ModelRegistry;
  /** What the management APIs call; its events say each change of the registered models. */
  readonly service: ModelService;
  readonly urls: {
    readonly inference: string;
    readonly management: string;
    readonly metrics: string | undefined;
    /** `host:port` of the gRPC inference and management listeners. */
    readonly grpcInference: string;
    readonly grpcManagement: string;
    /** KServe's listeners (8080, 8081), when they are on and no other listener holds their port. */
    readonly kserve: string | undefined;
    readonly grpcKserve: string | undefined;
  };
  /**
   * Settles once the start-up models' first workers have loaded (warm-up included) or failed:
   * from then on the server serves them, which `tsserve --start` waits for before it returns,
   * and says which do not serve, and why.
   */
  readonly startupModelsStarted: Promise<StartupOutcome>;
  /**
   * Stops the server: at any moment, the start-up models' loading or warm-up included; once,
   * however often it is called.
   */
  close(): Promise<void>;
}

/**
 * Starts the server. `stop` aborted (a SIGTERM during the start) ends the start at its next step
 * with StartStopped, whatever it had begun (listeners, workers) closed, as a failed start is.
 */
export async function startServer(
  config: ServerConfig,
  loggers: Loggers = createLoggers(config.logLocation, { metricsLocation: config.metricsLocation, format: config.logFormat, rolling: config.logRolling }),
  stop?: AbortSignal,
): Promise<RunningServer> {
  const registry = new ModelRegistry();
  const listening: Closable[] = [];
  const hosts = sharedHosts(config, loggers);
  try {
    return await openServer(config, loggers, { registry, listening, hosts }, stop);
  } catch (err) {
    // A start that fails halfway (a port in use, a snapshot naming a missing archive) leaves
    // nothing behind: no bound port, no worker process.
    await Promise.all(listening.map((l) => l.close()));
    await Promise.all(registry.all().map((m) => m.close()));
    hosts.close();
    throw explainListenError(err as Error, config);
  }
}

/** A listener, REST or gRPC, to close when the server stops or fails to start. */
interface Closable {
  /** Stops accepting; resolves once what was accepted has been answered or cut. */
  close(): Promise<unknown>;
  /** Answers what is still in flight with an error and ends every connection. */
  cut(): void;
}

/** What a failed start closes: the models, the listeners and the shared worker processes. */
interface Opened {
  readonly registry: ModelRegistry;
  readonly listening: Closable[];
  readonly hosts: SharedHosts;
}

async function openServer(
  config: ServerConfig,
  loggers: Loggers,
  { registry, listening, hosts }: Opened,
  stop: AbortSignal | undefined,
): Promise<RunningServer> {
  const log = loggers.server;
  registry.startingUp = true;
  log.info({ summary: startUpSummary(config, VERSION) }, SUMMARY_MESSAGE);
  for (const warning of config.warnings) log.warn(warning);
  // Before any model loads: a port in use is the one thing said, not its workers' undoing.
  await checkListeners(config);
  const stale = removeStaleExtractions();
  if (stale.length > 0) log.info(`Removed ${stale.length} model directories left by servers that are no longer running`);
  const partials = config.modelStore ? removeStalePartials(config.modelStore) : { removed: [], failed: [] };
  if (partials.removed.length > 0)
    log.info(`Removed partial downloads left in the model store by servers that are no longer running: ${partials.removed.join(', ')}`);
  if (partials.failed.length > 0) log.warn(`Could not remove partial downloads left in the model store: ${partials.failed.join(', ')}`);
  const metrics = new MetricsRegistry(config.metricsMode, {
    definitions: config.metricsConfig ? await readMetricsConfig(config.metricsConfig) : undefined,
    autoDetect: config.modelMetricsAutoDetect,
    lines: (file, line) => loggers.metric(file, line),
    warn: (message) => log.warn(message),
    tracing: await tracingFor(config, log),
  });
  const loader: LoaderDeps = {
    server: config,
    locate: {
      modelStore: config.modelStore,
      allowedUrls: config.allowedUrls,
      maxDownloadBytes: config.maxDownloadSize,
      downloadTimeoutMs: config.downloadTimeout * 1000,
      stop,
    },
    poolDeps: workerFactory({ config, loggers, metrics, hosts }),
    log: (message) => log.warn(message),
  };
  const service = new ModelService({ config, registry, loader, residencyLog: (message) => log.info(message), unattributedBytes: () => hosts.spareBytes() });
  service.on((event) => metrics.followModels(event));
  service.memory.on((event) => metrics.residency(event));

  const startup = config.modelSnapshot
    ? await restoreSnapshot(config.modelSnapshot, config, service, log, stop)
    : await registerStartupModels(config, service, log, stop);
  const snapshots = config.snapshotsDisabled
    ? undefined
    : new SnapshotWriter(snapshotDir(config.logLocation), config.properties, registry, { keep: config.snapshotsKept, log });
  // A start-up or shutdown snapshot that cannot be written (a full or read-only disk) is logged,
  // never fatal: it must not stop the server from starting or from stopping its workers.
  const writeSnapshotNow = (kind: 'startup' | 'shutdown'): void => {
    try {
      snapshots?.writeNow(kind);
    } catch (err) {
      log.error(`Could not write a ${kind} config snapshot: ${(err as Error).message}`);
    }
  };
  // Each change's snapshot: its answer waits for it, and is an error if the disk did not take it.
  if (snapshots) service.on(() => snapshots.saveChange());

  // APIs whose addresses name the same socket share one listener, as TorchServe's "ALL" listener.
  // Port 0 means "any free port", so it never names the same socket twice.
  const listeners = new Map<string, { app: FastifyInstance; address: ListenAddress }>();
  const tls = await tlsForListeners(config, loggers);
  const listenerFor = (address: ListenAddress, api: string): FastifyInstance => {
    const key = address.port === 0 && address.scheme !== 'unix' ? `${address.raw}#${api}` : address.raw;
    let entry = listeners.get(key);
    if (!entry) {
      const root = api === 'kserve' ? KSERVE_ROOT : undefined;
      const { app, stop } = createListener({ config, metrics, loggers }, address.scheme === 'https' ? tls : undefined, root);
      entry = { app, address };
      listeners.set(key, entry);
      listening.push(stop);
    }
    urlOf.set(api, key);
    return entry.app;
  };
  const urlOf = new Map<string, string>();
  const tokens = config.disableTokenAuthorization ? undefined : new TokenStore(config.keyFile, config.tokenExpirationMin);
  if (tokens) log.info(`Token authorization is on; keys are in ${tokens.file}`);
  const inference = listenerFor(config.inferenceAddress, 'inference');
  await inference.register(inferenceRoutes, { config, registry, metrics, tokens });
  refuseBeforeRouting(inference.server, { config, registry, metrics, tokens, loggers });
  const management = listenerFor(config.managementAddress, 'management');
  await management.register(managementRoutes, { tokens, service });
  if (tokens) await management.register(tokenRoutes, { tokens });
  if (config.enableMetricsApi) await listenerFor(config.metricsAddress, 'metrics').register(metricsRoutes, { metrics });

  const bound = new Map<string, string>();
  for (const [key, { app, address }] of listeners) bound.set(key, await listen(app, address));
  const url = (api: string): string | undefined => bound.get(urlOf.get(api) ?? '');
  const grpcDeps: GrpcDeps = { config, registry, metrics, tokens, loggers, service };
  const grpcInference = await listenGrpc('inference', config.grpcInference, grpcDeps);
  listening.push(grpcInference);
  const grpcManagement = await listenGrpc('management', config.grpcManagement, grpcDeps);
  listening.push(grpcManagement);
  const taken = [...bound.values(), grpcInference.address, grpcManagement.address];
  const kserveHttp = config.kserve && freePort(config.kserve.http.port, taken, 'KServe HTTP', log) ? listenerFor(config.kserve.http, 'kserve') : undefined;
  if (kserveHttp) {
    await kserveHttp.register(kserveListenerRoutes, { config, registry, metrics, tokens });
    bound.set(urlOf.get('kserve')!, await listen(kserveHttp, config.kserve!.http));
  }
  const grpcKserve =
    config.kserve && freePort(config.kserve.grpc.port, taken, 'KServe gRPC', log) ? await listenGrpc('kserve', config.kserve.grpc, grpcDeps) : undefined;
  if (grpcKserve) listening.push(grpcKserve);
  // The last step that waits: from here on, a stop is close()'s to carry out.
  continueUnlessStopped(stop);
  writeSnapshotNow('startup');
  const stopSystemMetrics = config.disableSystemMetrics
    ? undefined
    : startSystemMetrics({
        intervalSec: config.metricTimeInterval,
        publish: (sample) => metrics.system(sample),
        workers: () => registry.all().flatMap((m) => m.pool.workers),
      });

  let closing: Promise<void> | undefined;
  return {
    config,
    registry,
    service,
    urls: {
      inference: url('inference')!,
      management: url('management')!,
      metrics: url('metrics'),
      grpcInference: grpcInference.address,
      grpcManagement: grpcManagement.address,
      kserve: url('kserve'),
      grpcKserve: grpcKserve?.address,
    },
    startupModelsStarted: startupOutcome(startup)
      .then(async (outcome) => {
        // Stopping, the listeners are closing: nothing to warm up.
        if (!closing) await warmUpFrontEnd(config, registry, url('inference'), tokens, log);
        return outcome;
      })
      .finally(() => {
        registry.startingUp = false;
      }),
    close() {
      closing ??= (async () => {
        // Stop accepting; fastify's close resolves once every request in flight has been answered.
        // The models serve on until then: a request accepted before the stop whose body was still
        // arriving reaches a model that takes it (a drain of the queues alone stopped the workers
        // under it: "no worker"). After drain_timeout, the models' stop answers what is left.
        const began = performance.now();
        service.stop();
        const listenersClosed = Promise.all(listening.map((l) => l.close()));
        stopSystemMetrics?.();
        writeSnapshotNow('shutdown');
        await Promise.race([listenersClosed, delay(config.drainTimeout * 1000, undefined, { ref: false })]);
        const left = Math.max(0, config.drainTimeout * 1000 - (performance.now() - began));
        await Promise.all(registry.all().map((m) => m.stop(left)));
        hosts.close();
        // What the drain could not finish (a body still arriving, a header sent in half, a DELETE
        // waiting out unregister_model_timeout) is answered 503 and its connection ended.
        for (const l of listening) l.cut();
        await listenersClosed;
        // The spans of the last answers go out before the process may end.
        await metrics.tracing?.shutdown((message) => log.warn(message));
        loggers.close();
      })();
      return closing;
    },
  };
}

/**
 * Tracing, where the configuration may turn it on (otel_traces, or any OTEL_TRACES_EXPORTER: one
 * tsserve does not ship is said in the log). Only then is OpenTelemetry's SDK loaded: some 300
 * modules, a tenth of a CPU-second that every start of a server that does not trace (the
 * default) paid for nothing.
 */
async function tracingFor(config: ServerConfig, log: Loggers['server']): Promise<Tracing | undefined> {
  if (!config.otelTraces && process.env.OTEL_TRACES_EXPORTER === undefined) return undefined;
  const { Tracing } = await import('./metrics/tracing.js');
  return Tracing.fromConfig(config, { info: (message) => log.info(message), warn: (message) => log.warn(message) });
}

/**
 * The front end's warm-up (http/warm-up.ts) with each start-up model that serves and names a
 * warmupFile, said in the log: start-up takes that much longer, and this is why. A stateful
 * (sequence) model is left out: each request without a sequence id would open a sequence.
 */
async function warmUpFrontEnd(
  config: ServerConfig,
  registry: ModelRegistry,
  inferenceUrl: string | undefined,
  tokens: TokenStore | undefined,
  log: Loggers['server'],
): Promise<void> {
  if (!inferenceUrl || config.frontEndWarmupMs === 0) return;
  const samples = registry.all().flatMap((model) => {
    const name = model.spec.yaml.warmupFile;
    if (!model.spec.loadedAtStartup || model.settings.sequence || typeof name !== 'string' || model.pool.loadedCount() === 0) return [];
    const path = existingInside(model.spec.dir, name);
    if (!path) return [];
    const envelope = envelopeOf(config, model.spec.manifest.model.envelope);
    return [{ model: model.name, body: enveloped(readFileSync(path), envelope), batchDelayMs: batchWaitMs(model.settings) }];
  });
  if (samples.length === 0) return;
  const began = performance.now();
  const { answered, slow } = await warmFrontEnd(inferenceUrl, samples, config.frontEndWarmupMs, tokens?.authorization('inference'));
  const models = samples.map((s) => s.model).join(', ');
  const notRepeated = slow.length > 0 ? ` (not repeated, their answers ${SLOW_MS} ms or slower: ${slow.join(', ')})` : '';
  log.info(`Front end warmed up: ${answered} predictions of ${models} answered in ${Math.round(performance.now() - began)} ms${notRepeated}`);
}

/**
 * A warmupFile's bytes as a client of the model's service envelope sends them: under KServe's
 * (kserve, kservev2) a raw file was the envelope's 400 each time, and the front end warmed nothing
 * (review-9 F3): as the base64 `data` of a v1 instance or of a v2 BYTES input, which a handler
 * reads as the file's bytes (requestPayload, payloadBytes).
 */
function enveloped(sample: Buffer, envelope: string | undefined): Buffer {
  const data = sample.toString('base64');
  if (envelope === 'kserve') return Buffer.from(JSON.stringify({ instances: [{ data }] }));
  if (envelope === 'kservev2') return Buffer.from(JSON.stringify({ inputs: [{ name: 'data', shape: [1], datatype: 'BYTES', data: [data] }] }));
  return sample;
}

/**
 * Whether a KServe listener may bind `port`. One that another listener holds is left to it: under
 * KServe the inference address is 8085, but a configuration that already serves inference on 8080
 * serves KServe's routes there (http/kserve.ts), and a management API on 8081 keeps that port.
 */
function freePort(port: number, taken: readonly string[], what: string, log: Loggers['server']): boolean {
  const holder = taken.find((address) => port !== 0 && address.endsWith(`:${port}`));
  if (holder) log.info(`${what} listener not opened: port ${port} is already ${holder}'s`);
  return holder === undefined;
}

/**
 * Connections the kernel may hold for a listener before it accepts them (capped by
 * net.core.somaxconn). Node's 511 overflowed when a thousand clients connected at once while the
 * front end was busy: their SYNs were dropped and retried 1, 3, 7 s later, which clients saw as
 * answers seconds late from an idle server.
 */
const LISTEN_BACKLOG = 4096;

async function listen(app: FastifyInstance, address: ListenAddress): Promise<string> {
  if (address.scheme === 'unix') {
    await app.listen({ path: address.path!, backlog: LISTEN_BACKLOG });
    return `unix:${address.path}`;
  }
  await app.listen({ host: address.host, port: address.port, backlog: LISTEN_BACKLOG });
  const bound = app.server.address();
  const port = typeof bound === 'object' && bound ? bound.port : address.port;
  return `${address.scheme}://${address.host.includes(':') ? `[${address.host}]` : address.host}:${port}`;
}

/** Key material, read (or made) once for every `https://` listener; none without one. */
async function tlsForListeners(config: ServerConfig, loggers: Loggers): Promise<TlsMaterial | undefined> {
  const addresses = [config.inferenceAddress, config.managementAddress, ...(config.enableMetricsApi ? [config.metricsAddress] : [])];
  if (!addresses.some((a) => a.scheme === 'https')) return undefined;
  return tlsMaterial(config.tls, { warn: (message) => loggers.server.warn(message) });
}

/**
 * @module models/registration
 * The models a start registers: `load_models`/`--models`, or a config snapshot being restored.
 * Each joins the registry as a management call's does (ModelService.add); what differs is only
 * how its workers start: in the background, while the server opens its listeners.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelSnapshot } from '../config/snapshot-file.js';
import { startupWorkers, type ServerConfig } from '../config/server-config.js';
import type { Loggers } from '../log/loggers.js';
import type { Model } from './model.js';
import type { RegisterRequest } from './model-loader.js';
import type { ModelService } from './model-service.js';

type Log = Loggers['server'];

/** Thrown where a start stopped because a stop was asked for (SIGTERM), not because anything failed. */
export class StartStopped extends Error {
  constructor() {
    super('The start was stopped: a stop was asked for');
    this.name = 'StartStopped';
  }
}

/** Throws StartStopped once `stop` is aborted: a start goes no further than its next step. */
export function continueUnlessStopped(stop: AbortSignal | undefined): void {
  if (stop?.aborted) throw new StartStopped();
}

/**
 * What a stop waits for a start-up load it overtook: a download ends at once (the stop aborts it
 * and its partial file goes), a small archive finishes unpacking and its model is closed, its
 * files removed; a large one is left to the next start, which removes a dead server's files.
 */
const OVERTAKEN_LOAD_WAIT_MS = 2_000;

/**
 * service.add for a start-up model, unless a stop comes first: the stop does not wait for an
 * archive to download or unpack (or its dependencies to install) beyond OVERTAKEN_LOAD_WAIT_MS.
 */
async function registerUnlessStopped(request: RegisterRequest, service: ModelService, stop: AbortSignal | undefined): Promise<Model> {
  continueUnlessStopped(stop);
  const loading = service.add(request);
  if (!stop) return loading;
  let overtake = (): void => {};
  const stopped = new Promise<never>((_resolve, reject) => {
    overtake = () => reject(new StartStopped());
    stop.addEventListener('abort', overtake, { once: true });
  });
  try {
    return await Promise.race([loading, stopped]);
  } catch (err) {
    if (err instanceof StartStopped) await closeWhenLoaded(loading, OVERTAKEN_LOAD_WAIT_MS);
    throw err;
  } finally {
    stop.removeEventListener('abort', overtake);
  }
}

/** Closes the model `loading` answers, waiting for it no longer than `waitMs`; a load that fails has nothing to close. */
async function closeWhenLoaded(loading: Promise<Model>, waitMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, waitMs);
  });
  const closed = loading.then(
    (model) => model.close(),
    () => {},
  );
  await Promise.race([closed, late]);
  clearTimeout(timer);
}

/** A start-up model that does not serve, and why: for the log and for `tsserve --start`'s console. */
export interface StartupFailure {
  /** As the operator named it: the `--models` item, or a snapshot's `name version`. */
  readonly model: string;
  readonly reason: string;
}

/** What loading the start-up models began. */
export interface StartupLoad {
  /** How many models were asked for. */
  readonly count: number;
  /** Each registered model's worker start: settles (never rejects) with its failure if no worker started. */
  readonly starting: Array<Promise<StartupFailure | undefined>>;
  /** The models that could not be registered at all (missing, corrupt, refused). */
  readonly failed: StartupFailure[];
}

/** How the start-up models came out once their workers started or failed to. */
export interface StartupOutcome {
  readonly count: number;
  readonly failed: readonly StartupFailure[];
}

/** Waits for the workers of every model `load` registered, then answers each model that does not serve. */
export async function startupOutcome(load: StartupLoad): Promise<StartupOutcome> {
  const workerFailures = (await Promise.all(load.starting)).filter((f) => f !== undefined);
  return { count: load.count, failed: [...load.failed, ...workerFailures] };
}

/**
 * `load_models` / `--models`: `all` or `name=file` items. Failures are logged, skipped and
 * answered; each model's workers start in the background. A stop (`stop` aborted) ends the
 * loading with StartStopped, the models registered so far left to the caller to close.
 */
export async function registerStartupModels(config: ServerConfig, service: ModelService, log: Log, stop?: AbortSignal): Promise<StartupLoad> {
  const starting: StartupLoad['starting'] = [];
  const failed: StartupFailure[] = [];
  const items = config.loadModels.length === 1 && config.loadModels[0]!.toLowerCase() === 'all' ? storeEntries(config.modelStore) : config.loadModels;
  for (const item of items) {
    const eq = item.indexOf('=');
    const [modelName, url] = eq > 0 ? [item.slice(0, eq), item.slice(eq + 1)] : [undefined, item];
    try {
      const model = await registerUnlessStopped(
        { url, modelName, loadedAtStartup: true, initialWorkers: startupWorkers(config), atStartup: true },
        service,
        stop,
      );
      starting.push(startWorkersInBackground(model, item, service, log));
    } catch (err) {
      if (err instanceof StartStopped) throw err;
      failed.push({ model: item, reason: (err as Error).message });
      log.error(`Failed to load model ${item}: ${(err as Error).message}`);
    }
  }
  return { count: items.length, starting, failed };
}

/**
 * Registers every version a snapshot names with its settings, and answers each restored model's
 * worker start, as registerStartupModels does. A start never fails for one bad entry: a version
 * whose archive is missing (TorchServe fails the start) or no longer opens (corrupt, hostile, a
 * full disk to extract it on) is reported and kept in the registry as a failed restore (listed,
 * described as FAILED, as TorchServe keeps it registered), so that the snapshots written from now
 * on keep it for the next start; the others are served. A stop ends it as registerStartupModels.
 */
export async function restoreSnapshot(
  snapshot: ModelSnapshot,
  config: ServerConfig,
  service: ModelService,
  log: Log,
  stop?: AbortSignal,
): Promise<StartupLoad> {
  const restored: Array<{ model: Model; label: string }> = [];
  const failed: StartupFailure[] = [];
  for (const [name, versions] of Object.entries(snapshot.models)) {
    for (const [version, s] of Object.entries(versions)) {
      try {
        if (!existsSync(join(config.modelStore ?? '', s.marName))) {
          throw new Error(`Model archive file for model :${name}, version :${version} not found in model store`);
        }
        const model = await registerUnlessStopped(
          {
            url: s.marName,
            modelName: name,
            runtime: s.runtimeType,
            batchSize: s.unset?.includes('batchSize') ? undefined : s.batchSize,
            maxBatchDelay: s.unset?.includes('maxBatchDelay') ? undefined : s.maxBatchDelay,
            responseTimeout: s.responseTimeout,
            startupTimeout: s.startupTimeout,
            initialWorkers: s.minWorkers,
            loadedAtStartup: true,
          },
          service,
          stop,
        );
        model.settings.maxWorkers = Math.max(Math.min(s.maxWorkers, config.maxWorkersPerModel), model.settings.minWorkers);
        if (s.defaultVersion) service.registry.setDefault(name, model.version);
        restored.push({ model, label: `${name} ${version}` });
      } catch (err) {
        if (err instanceof StartStopped) throw err;
        failed.push({ model: `${name} ${version}`, reason: (err as Error).message });
        service.registry.addFailed({ name, version, entry: s, reason: (err as Error).message });
        log.error(
          `FAILED to restore model ${name}, version ${version}, from ${s.marName}: ${(err as Error).message}. The other models are served; it stays registered, described as FAILED, and in the config snapshots, so the next start tries it again (unregister it to forget it).`,
        );
      }
    }
  }
  const starting = restored.map(({ model, label }) => startWorkersInBackground(model, label, service, log));
  const summary = `Restored ${restored.length} model versions from snapshot ${snapshot.name}`;
  if (failed.length > 0) log.error(`${summary}; ${failed.length} failed: ${failed.map((f) => f.model).join(', ')}`);
  else log.info(summary);
  return { count: restored.length + failed.length, starting, failed };
}

/**
 * Start-up models get their workers in the background, within the memory budget (past it a model
 * starts unloaded, and its first request loads it); requests that arrive meanwhile wait in the
 * queue. Settles (never rejects) once the first workers have loaded or failed to, with the failure.
 * A model closed meanwhile (the start failed for another reason, such as a port in use) failed
 * for that reason, not its own: nothing is said of it.
 */
function startWorkersInBackground(model: Model, label: string, service: ModelService, log: Log): Promise<StartupFailure | undefined> {
  return service.startWorkers(model).then((r) => {
    if (r.ok || model.stopped) return undefined;
    log.error(`Failed to start workers for ${model.name}: ${r.error.message}`);
    return { model: label, reason: `registered, but its workers did not start: ${r.error.message}` };
  });
}

function storeEntries(store: string | undefined): string[] {
  if (!store) return [];
  return readdirSync(store)
    .filter((name) => {
      if (name.startsWith('.')) return false;
      return isDirectory(join(store, name)) || /\.(mar|model|tar\.gz)$/i.test(name);
    })
    .sort();
}

/**
 * False for what cannot be looked at (a dangling link, no permission): such an entry named as an
 * archive is then tried as one and reported with the other failed models, and the start goes on.
 */
function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

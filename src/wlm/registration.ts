/**
 * @module wlm/registration
 * The one way a model joins the registry, whatever asked for it: the management API (REST and
 * gRPC), `load_models`/`--models` at start-up, or a config snapshot being restored. Each loads
 * the archive (wlm/model-loader.ts) and adds the model; a model the registry refuses is closed, so
 * nothing of it is left behind. What differs is only how its workers start.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelSnapshot } from '../config/snapshot-file.js';
import { startupWorkers, type ServerConfig } from '../config/server-config.js';
import type { Loggers } from '../log/loggers.js';
import type { Model } from './model.js';
import { loadModel, type LoaderDeps, type RegisterRequest } from './model-loader.js';
import type { ModelRegistry } from './model-registry.js';

export interface RegistrationDeps {
  readonly loader: LoaderDeps;
  readonly registry: ModelRegistry;
}

type Log = Loggers['server'];

/** Loads the model `request` names and adds it to the registry; its workers are the caller's to start. */
export async function registerModel(request: RegisterRequest, deps: RegistrationDeps): Promise<Model> {
  const model = await loadModel(request, deps.loader);
  try {
    deps.registry.add(model);
  } catch (err) {
    await model.close();
    throw err;
  }
  return model;
}

/**
 * `load_models` / `--models`: `all` or `name=file` items. Failures are logged and skipped.
 * Answers each model's worker start, which runs in the background.
 */
export async function registerStartupModels(config: ServerConfig, deps: RegistrationDeps, log: Log): Promise<Array<Promise<void>>> {
  const starting: Array<Promise<void>> = [];
  const items = config.loadModels.length === 1 && config.loadModels[0]!.toLowerCase() === 'all' ? storeEntries(config.modelStore) : config.loadModels;
  for (const item of items) {
    const eq = item.indexOf('=');
    const [modelName, url] = eq > 0 ? [item.slice(0, eq), item.slice(eq + 1)] : [undefined, item];
    try {
      const model = await registerModel({ url, modelName, loadedAtStartup: true, initialWorkers: startupWorkers(config), atStartup: true }, deps);
      starting.push(startWorkersInBackground(model, log));
    } catch (err) {
      log.error(`Failed to load model ${item}: ${(err as Error).message}`);
    }
  }
  return starting;
}

/**
 * Registers every version a snapshot names with its settings, and answers each restored model's
 * worker start, as registerStartupModels does. A start never fails for one bad entry: a version
 * whose archive is missing (TorchServe fails the start) or no longer opens (corrupt, hostile, a
 * full disk to extract it on) is reported and kept in the registry as a failed restore (listed,
 * described as FAILED, as TorchServe keeps it registered), so that the snapshots written from now
 * on keep it for the next start; the others are served.
 */
export async function restoreSnapshot(snapshot: ModelSnapshot, deps: RegistrationDeps, log: Log): Promise<Array<Promise<void>>> {
  const restored: Model[] = [];
  const failed: string[] = [];
  for (const [name, versions] of Object.entries(snapshot.models)) {
    for (const [version, s] of Object.entries(versions)) {
      try {
        if (!existsSync(join(deps.loader.locate.modelStore ?? '', s.marName))) {
          throw new Error(`Model archive file for model :${name}, version :${version} not found in model store`);
        }
        const model = await registerModel(
          {
            url: s.marName,
            modelName: name,
            runtime: s.runtimeType,
            batchSize: s.batchSize,
            maxBatchDelay: s.maxBatchDelay,
            responseTimeout: s.responseTimeout,
            startupTimeout: s.startupTimeout,
            initialWorkers: s.minWorkers,
            loadedAtStartup: true,
          },
          deps,
        );
        model.settings.maxWorkers = Math.max(Math.min(s.maxWorkers, deps.loader.server.maxWorkersPerModel), model.settings.minWorkers);
        if (s.defaultVersion) deps.registry.setDefault(name, model.version);
        restored.push(model);
      } catch (err) {
        failed.push(`${name} ${version}`);
        deps.registry.addFailed({ name, version, entry: s, reason: (err as Error).message });
        log.error(
          `FAILED to restore model ${name}, version ${version}, from ${s.marName}: ${(err as Error).message}. The other models are served; it stays registered, described as FAILED, and in the config snapshots, so the next start tries it again (unregister it to forget it).`,
        );
      }
    }
  }
  const starting = restored.map((model) => startWorkersInBackground(model, log));
  const summary = `Restored ${restored.length} model versions from snapshot ${snapshot.name}`;
  if (failed.length > 0) log.error(`${summary}; ${failed.length} failed: ${failed.join(', ')}`);
  else log.info(summary);
  return starting;
}

/**
 * Start-up models get their workers in the background; requests that arrive meanwhile wait in the
 * queue. Settles (never rejects) once the first workers have loaded or failed to.
 */
function startWorkersInBackground(model: Model, log: Log): Promise<void> {
  return model.scale(model.settings.minWorkers, model.settings.maxWorkers).then((r) => {
    if (!r.ok) log.error(`Failed to start workers for ${model.name}: ${r.error.message}`);
  });
}

function storeEntries(store: string | undefined): string[] {
  if (!store) return [];
  return readdirSync(store)
    .filter((name) => {
      if (name.startsWith('.')) return false;
      return statSync(join(store, name)).isDirectory() || /\.(mar|model|tar\.gz)$/i.test(name);
    })
    .sort();
}

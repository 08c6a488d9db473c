/**
 * @module models/model-loader
 * A register request to a Model ready to be added to the registry: find the archive, open it,
 * read its manifest and model-config.yaml, merge the settings. On any failure nothing is left
 * behind (no extracted directory, no downloaded file).
 */
import { rmSync } from 'node:fs';
import { basename } from 'node:path';
import { installDependencies } from '../archive/dependencies.js';
import { openModelArchive } from '../archive/extract.js';
import { linkPackages } from '../archive/link-packages.js';
import { locateArchive, type LocateOptions } from '../archive/locate.js';
import { readManifest, RUNTIMES } from '../archive/manifest.js';
import { checkModelName, checkModelVersion } from '../archive/model-name.js';
import { isBuiltinHandler } from '../handler/builtins.js';
import { pythonModelMessage, pythonModelReasons } from '../archive/python-model.js';
import { limitWorkers, readModelYaml, resolveSettings, yamlWarnings, type RegisterParams } from '../config/model-config.js';
import type { ServerConfig } from '../config/server-config.js';
import { tsError } from '../errors.js';
import { Model } from './model.js';
import type { PoolDeps } from '../workers/worker-pool.js';

export interface RegisterRequest extends RegisterParams {
  readonly url: string;
  readonly modelName?: string | undefined;
  readonly handler?: string | undefined;
  readonly runtime?: string | undefined;
  readonly loadedAtStartup: boolean;
}

export interface LoaderDeps {
  readonly server: ServerConfig;
  readonly locate: LocateOptions;
  readonly poolDeps: (model: Model) => PoolDeps;
  /** The server log, for what registration decides without failing. */
  readonly log: (message: string) => void;
  /**
   * Whether an extracted archive gets the node_modules links its worker's handler imports through
   * (archive/link-packages.ts): true unless told. The in-process tests' fake workers import
   * nothing, and the ~25 links a registration cost them more than anything else it does.
   */
  readonly linkPackages?: boolean;
}

export async function loadModel(req: RegisterRequest, deps: LoaderDeps): Promise<Model> {
  if (req.runtime !== undefined && !(RUNTIMES as readonly string[]).includes(req.runtime)) {
    throw tsError('TSS_ERR_ARCHIVE_INVALID_RUNTIME', req.runtime);
  }
  // A name given is checked before its archive is fetched; the one used, wherever from, below.
  if (req.modelName) checkModelName(req.modelName);
  const located = await locateArchive(req.url, deps.locate, deps.log);
  let opened: Awaited<ReturnType<typeof openModelArchive>> | undefined;
  try {
    opened = await openModelArchive(located.path, deps.server.archiveLimits);
    // Inside the try: a node_modules that is not a folder is the archive's 400, its folder removed.
    if (opened.extracted && (deps.linkPackages ?? true)) linkPackages(opened.dir);
    const manifest = readManifest(opened.dir);
    const name = req.modelName || manifest.model.modelName || nameFromFile(located.marName);
    if (!name) throw tsError('TSS_ERR_ARCHIVE_INVALID', 'Model name is not defined.');
    checkModelName(name);
    checkModelVersion(manifest.model.modelVersion);
    const handler = req.handler || manifest.model.handler || deps.server.defaultServiceHandler;
    if (!handler) throw tsError('TSS_ERR_ARCHIVE_INVALID', 'Handler is not defined.');
    const python = pythonModelReasons(opened.dir, manifest);
    if (python.length > 0) throw tsError('TSS_ERR_ARCHIVE_INVALID', pythonModelMessage(name, located.marName, python));
    const requirements = manifest.model.requirementsFile;
    if (deps.server.installPyDepPerModel && requirements) {
      if ((await installDependencies(opened.dir, requirements, name)) === 'not-npm') {
        deps.log(`Model ${name}: ${requirements} is not a package.json; no dependencies installed (no worker here runs Python)`);
      }
    }
    const yaml = await readModelYaml(opened.dir, manifest.model.configFile);
    for (const warning of yamlWarnings(yaml, manifest.model.configFile ?? 'model-config.yaml')) deps.log(`Model ${name}: ${warning}`);
    const version = manifest.model.modelVersion;
    const settings = resolveSettings(deps.server, name, version, yaml, req, manifest.model.configFile !== undefined, isBuiltinHandler(handler));
    const limited = limitWorkers(settings, deps.server.maxWorkersPerModel);
    if (limited) deps.log(`Model ${name}: ${limited}`);
    if (settings.adaptive) {
      const why = isBuiltinHandler(handler) ? `built-in handler ${handler} and no batch_size` : 'batching: adaptive';
      deps.log(
        `Model ${name}: ${why}: a worker takes up to ${settings.takeQueued} queued requests at once (builtin_handler_batch_size)${settings.adaptiveThreads ? ', and a batch that runs alone uses every core (adaptiveThreads)' : ''}; it waits for more only when the measured batch times say that pays, within latencyTargetMs ${settings.adaptive.latencyTargetMs} (adaptive batching)`,
      );
    }
    return new Model(
      {
        name,
        version,
        url: req.url,
        dir: opened.dir,
        extracted: opened.extracted,
        marName: located.marName,
        downloadedFile: located.downloaded ? located.path : undefined,
        manifest,
        handler,
        runtime: req.runtime ?? manifest.runtime,
        yaml,
        loadedAtStartup: req.loadedAtStartup,
      },
      settings,
      deps.poolDeps,
    );
  } catch (err) {
    if (opened?.extracted) rmSync(opened.dir, { recursive: true, force: true });
    if (located.downloaded) rmSync(located.path, { force: true });
    throw err;
  }
}

/** `dir/my-model.v2.mar` -> `my_model_v2`, as TorchServe derives a missing name. */
function nameFromFile(file: string): string {
  return basename(file)
    .replace(/(\.tar\.gz|\.mar|\.model)$/i, '')
    .replace(/\W/g, '_');
}

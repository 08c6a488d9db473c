/**
 * @module http/management
 * The management API: list, describe, register, scale, set-default, unregister, with TorchServe's
 * parameters, defaults, status codes and messages (spec §4).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerConfig } from '../config/server-config.js';
import { tsError } from '../errors.js';
import type { Model, ModelDescription } from '../models/model.js';
import { registerModel, type RegistrationDeps } from '../models/registration.js';
import type { FailedRestore, ModelRegistry } from '../models/model-registry.js';
import type { WorkerAndBatchSettings } from '../config/snapshot-file.js';
import type { ScaleResult } from '../workers/worker-pool.js';
import type { TokenStore } from '../auth/tokens.js';
import { documented, modelApi } from './api-description.js';
import { requireToken } from './auth.js';
import { mimeType } from './input.js';
import { modelReadiness } from './kserve.js';
import { boolParam, intParam, registerWarnings, requestParams, scaleWarnings, shown, type Params } from './params.js';
import { sendJson, sendStatus, warn } from './reply.js';
import { workflowManagementRoutes } from './workflows.js';

export interface ManagementDeps {
  readonly config: ServerConfig;
  readonly tokens: TokenStore | undefined;
  readonly registry: ModelRegistry;
  readonly registration: RegistrationDeps;
  /**
   * Called after every change of the registered models or their workers: saves it in a config
   * snapshot, and rejects (507) if the disk did not take it. The change stays in effect either way.
   */
  readonly onChange: () => Promise<void>;
}

type Req = FastifyRequest<{ Params: { name?: string; version?: string } }>;

export async function managementRoutes(app: FastifyInstance, deps: ManagementDeps): Promise<void> {
  const { registry } = deps;
  requireToken(app, deps.tokens, 'management');
  const params = (request: Req): Params => requestParams(request.query, request.body, mimeType(request.headers['content-type']));
  const requireModelApi = (): void => {
    if (!deps.config.enableModelApi) throw tsError('TSS_ERR_MODEL_API_DISABLED');
  };

  app.get('/models', documented('List the models (default versions), paged by limit and next_page_token'), async (request: Req, reply) =>
    listModels(registry, params(request), reply),
  );
  app.post(
    '/models',
    documented(
      'Register a model archive: url, model_name, handler, runtime, batch_size, max_batch_delay, initial_workers, synchronous, response_timeout, startup_timeout',
    ),
    async (request: Req, reply) => {
      requireModelApi();
      return register(params(request), deps, reply);
    },
  );

  app.get(
    '/models/:name',
    documented("Describe the default version of a model (customized=true adds the handler's own description)"),
    async (request: Req, reply) => sendJson(reply, 200, [await describeVersion(registry, request.params.name!, undefined, params(request))]),
  );
  app.get('/models/:name/:version', documented('Describe one version of a model, or all of them with "all"'), async (request: Req, reply) => {
    const { name, version } = request.params as { name: string; version: string };
    if (version === 'all') return sendJson(reply, 200, describeAll(registry, name));
    return sendJson(reply, 200, [await describeVersion(registry, name, version, params(request))]);
  });

  const scaleRoute = async (request: Req, reply: FastifyReply): Promise<FastifyReply> => {
    const p = params(request);
    return scale(registry.get(request.params.name!, request.params.version ?? p.model_version), request.params.version ?? p.model_version, p, deps, reply);
  };
  app.put('/models/:name', documented('Scale workers: min_worker, max_worker, synchronous'), scaleRoute);
  app.put('/models/:name/:version', documented('Scale the workers of one version'), scaleRoute);

  app.put('/models/:name/:version/set-default', documented('Make this version the default'), async (request: Req, reply) => {
    const { name, version } = request.params as { name: string; version: string };
    registry.setDefault(name, version);
    await deps.onChange();
    return sendStatus(reply, 200, `Default version successfully updated for model "${name}" to "${version}"`);
  });

  const unregisterRoute = async (request: Req, reply: FastifyReply): Promise<FastifyReply> => {
    requireModelApi();
    const { name, version } = request.params as { name: string; version?: string };
    if (!registry.find(name, version) && registry.forgetFailed(name, version)) {
      await deps.onChange();
      return sendStatus(reply, 200, `Model "${name}" unregistered`);
    }
    const model = registry.remove(name, version);
    const saved = deps.onChange();
    await model.stop(deps.config.unregisterModelTimeout * 1000);
    await saved;
    return sendStatus(reply, 200, `Model "${model.name}" unregistered`);
  };
  app.delete('/models/:name', documented('Unregister a model'), unregisterRoute);
  app.delete('/models/:name/:version', documented('Unregister one version of a model'), unregisterRoute);

  const describeApi = async (request: Req, reply: FastifyReply): Promise<FastifyReply> =>
    sendJson(reply, 200, modelApi(registry.get(request.params.name!, request.params.version).name, 'management'));
  app.options('/models/:name', describeApi);
  app.options('/models/:name/:version', describeApi);

  // KServe v1's readiness probe: ready while a worker has the default version loaded. On a listener
  // that also serves inference, the KServe v1 prediction route holds this path (http/kserve.ts).
  const readiness = { method: 'GET', url: '/v1/models/:name' } as const;
  if (!app.hasRoute(readiness)) {
    app.get(readiness.url, documented('KServe v1: is the model ready (a worker has its default version loaded)'), async (request: Req, reply) =>
      sendJson(reply, 200, modelReadiness(registry, request.params.name!)),
    );
  }

  workflowManagementRoutes(app);

  // Any other method on /models... is 405, as TorchServe answers.
  const notAllowed = async (): Promise<never> => {
    throw tsError('TSS_ERR_HTTP_METHOD_NOT_ALLOWED');
  };
  const served: Record<string, readonly string[]> = {
    '/models': ['GET', 'POST'],
    '/models/:name': ['GET', 'PUT', 'DELETE', 'OPTIONS'],
    '/models/:name/:version': ['GET', 'PUT', 'DELETE', 'OPTIONS'],
    '/models/:name/:version/set-default': ['PUT'],
    '/v1/models/:name': ['GET'],
  };
  for (const [url, methods] of Object.entries(served)) {
    const others = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'].filter((m) => !methods.includes(m) && !app.hasRoute({ method: m, url }));
    if (others.length > 0) app.route({ method: others as Array<'GET'>, url, handler: notAllowed });
  }
}

function listModels(registry: ModelRegistry, p: Params, reply: FastifyReply): FastifyReply {
  let limit = intParam(p, 'limit') ?? 100;
  if (limit > 100 || limit < 0) limit = 100;
  const start = Math.max(0, intParam(p, 'next_page_token') ?? 0);
  const failed = registry
    .failedRestores()
    .filter((f) => !registry.has(f.name) && registry.failedRestore(f.name) === f)
    .map((f) => ({ modelName: f.name, modelUrl: f.entry.marName }));
  const all = [...registry.defaults().map((m) => ({ modelName: m.name, modelUrl: m.spec.url })), ...failed].sort((a, b) =>
    a.modelName < b.modelName ? -1 : a.modelName > b.modelName ? 1 : 0,
  );
  const models = all.slice(start, start + limit);
  const body = start + limit <= all.length ? { nextPageToken: String(start + limit), models } : { models };
  return sendJson(reply, 200, body);
}

async function register(p: Params, deps: ManagementDeps, reply: FastifyReply): Promise<FastifyReply> {
  if (p.url === undefined) throw tsError('TSS_ERR_HTTP_BAD_REQUEST', 'Parameter url is required.');
  const warnings = registerWarnings(p);
  for (const warning of warnings) deps.registration.loader.log(`Register ${shown(p.url)}: ${warning}`);
  warn(reply, warnings);
  const asked = intParam(p, 'initial_workers');
  withinWorkerLimit('initial_workers', asked, deps.config);
  const initialWorkers = Math.max(0, asked ?? deps.config.defaultWorkersPerModel);
  const model = await registerModel(
    {
      url: p.url,
      modelName: p.model_name,
      handler: p.handler,
      runtime: p.runtime,
      batchSize: positive(intParam(p, 'batch_size')),
      maxBatchDelay: nonNegative(intParam(p, 'max_batch_delay')),
      responseTimeout: positive(intParam(p, 'response_timeout')),
      startupTimeout: nonNegative(intParam(p, 'startup_timeout')),
      initialWorkers,
      loadedAtStartup: false,
    },
    deps.registration,
  );
  const { minWorkers, maxWorkers } = model.settings;
  const label = `Model "${model.name}" Version: ${model.version}`;
  // The workers start whether or not the snapshot can be written: the registration is in effect.
  const scaling = minWorkers === 0 ? undefined : model.scale(minWorkers, maxWorkers);
  await deps.onChange();
  if (!scaling) {
    return sendStatus(reply, 200, `${label} registered with 0 initial workers. Use scale workers API to add workers for the model.`);
  }
  if (!boolParam(p, 'synchronous', true)) return accepted(scaling, reply);
  const result = await scaling;
  if (!result.ok) {
    // Unregistered meanwhile: someone else's undoing, and this call's answer is their 404.
    if (model.stopped) throw result.error;
    // The workers failed to load: undo this registration, and only this one.
    if (deps.registry.removeExactly(model)) void deps.onChange();
    await model.close();
    throw tsError('TSS_ERR_WORKER_START_FAILED', model.name, model.version);
  }
  if (result.running < minWorkers) return sendStatus(reply, 206, 'Workers scaling in progress...');
  return sendStatus(reply, 200, `${label} registered with ${result.running} initial workers`);
}

async function scale(model: Model, version: string | undefined, p: Params, deps: ManagementDeps, reply: FastifyReply): Promise<FastifyReply> {
  const min = intParam(p, 'min_worker') ?? 1;
  const max = intParam(p, 'max_worker') ?? min;
  if (max < min) throw tsError('TSS_ERR_WORKER_SCALE_INVALID');
  if (min < 0) throw tsError('TSS_ERR_WORKER_SCALE_NEGATIVE', min);
  withinWorkerLimit('min_worker', min, deps.config);
  withinWorkerLimit('max_worker', max, deps.config);
  const warnings = scaleWarnings(p);
  for (const warning of warnings) deps.registration.loader.log(`Scale ${shown(model.name)}: ${warning}`);
  warn(reply, warnings);
  const scaling = model.scale(min, max);
  await deps.onChange();
  if (!boolParam(p, 'synchronous', false)) return accepted(scaling, reply);
  const result = await scaling;
  if (!result.ok) throw model.stopped ? result.error : tsError('TSS_ERR_WORKER_START_FAILED', model.name, version ?? 'null');
  if (result.running < min) return sendStatus(reply, 206, 'Workers scaling in progress...');
  return sendStatus(reply, 200, `Workers scaled to ${min} for model: ${model.name}${version ? `, version: ${version}` : ''}`);
}

/**
 * A worker count a client asked for is refused above max_workers_per_model (400), at once: each
 * worker is a process forked on the event loop, and ten thousand of them blocked the server for
 * seconds and would take the machine's memory. Refused, not cut, as the client is there to read why.
 */
function withinWorkerLimit(param: string, asked: number | undefined, config: ServerConfig): void {
  if (asked !== undefined && asked > config.maxWorkersPerModel) throw tsError('TSS_ERR_WORKER_LIMIT', param, asked, config.maxWorkersPerModel);
}

/** One version's describe element, a failed restore's included. */
async function describeVersion(registry: ModelRegistry, name: string, version: string | undefined, p: Params): Promise<ModelDescription | FailedDescription> {
  const failed = registry.find(name, version) ? undefined : registry.failedRestore(name, version);
  return failed ? describeFailed(failed) : describe(registry.get(name, version), p);
}

/** `/models/{m}/all`: the registered versions, then those a start could not restore. */
function describeAll(registry: ModelRegistry, name: string): Array<ModelDescription | FailedDescription> {
  const failed = registry
    .failedRestores()
    .filter((f) => f.name === name)
    .map(describeFailed);
  const registered = failed.length > 0 && !registry.has(name) ? [] : registry.versions(name).map((m) => m.describe());
  return [...registered, ...failed];
}

/**
 * A version a snapshot named that the start could not restore, as TorchServe describes a model
 * it keeps registered with no worker: its snapshot settings and no workers; tsserve adds
 * `status` FAILED and the `error` that says why.
 */
interface FailedDescription extends WorkerAndBatchSettings {
  modelName: string;
  modelVersion: string;
  modelUrl: string;
  runtime: string;
  loadedAtStartup: true;
  serving: false;
  status: 'FAILED';
  error: string;
  workers: [];
  jobQueueStatus: { remainingCapacity: 0; pendingRequests: 0 };
}

function describeFailed(f: FailedRestore): FailedDescription {
  const { marName, runtimeType, minWorkers, maxWorkers, batchSize, maxBatchDelay, responseTimeout, startupTimeout } = f.entry;
  return {
    modelName: f.name,
    modelVersion: f.version,
    modelUrl: marName,
    runtime: runtimeType,
    minWorkers,
    maxWorkers,
    batchSize,
    maxBatchDelay,
    responseTimeout,
    startupTimeout,
    loadedAtStartup: true,
    serving: false,
    status: 'FAILED',
    error: `could not be restored from the config snapshot: ${f.reason}`,
    workers: [],
    jobQueueStatus: { remainingCapacity: 0, pendingRequests: 0 },
  };
}

/** One version's describe element; with `customized=true`, what its handler says of itself. */
async function describe(model: Model, p: Params): Promise<ModelDescription> {
  const described = model.describe();
  if (!boolParam(p, 'customized', false)) return described;
  const customizedMetadata = await model.customizedMetadata();
  return customizedMetadata === undefined ? described : { ...described, customizedMetadata };
}

/** 202: the workers start in the background; a failure shows in describe and the log. */
function accepted(scaling: Promise<ScaleResult>, reply: FastifyReply): FastifyReply {
  scaling.then(
    (r) => {
      if (!r.ok) reply.log.warn(`worker scaling failed: ${r.error.message}`);
    },
    () => {},
  );
  return sendStatus(reply, 202, 'Processing worker updates...');
}

function positive(n: number | undefined): number | undefined {
  return n !== undefined && n > 0 ? n : undefined;
}

function nonNegative(n: number | undefined): number | undefined {
  return n !== undefined && n >= 0 ? n : undefined;
}

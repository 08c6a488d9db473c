/**
 * @module http/predict
 * Where every prediction route ends (/predictions, /explanations, KServe, SageMaker, legacy):
 * the request is enqueued on the model's queue (batching/admission.ts) with a sink bound to this
 * reply, which streams intermediate answers as HTTP chunks when the handler sends any. OPTIONS on
 * any of these routes describes the model instead (TorchServe's per-model OpenAPI).
 */
import { PassThrough } from 'node:stream';
import type {
  FastifyReply,
  FastifyRequest,
  onRequestAsyncHookHandler,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
  RouteGenericInterface,
} from 'fastify';
import type { TokenStore } from '../auth/tokens.js';
import type { ServerConfig } from '../config/server-config.js';
import { tsError } from '../errors.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import type { JobResponse, JobSink } from '../batching/job.js';
import type { ModelRegistry } from '../models/model-registry.js';
import type { WireParam } from '../protocol/messages.js';
import { enqueuePrediction } from '../batching/admission.js';
import { modelApi } from './api-description.js';
import { mayRefuseEarly, stringParam, toWireRequest } from './input.js';
import { gson, sendError, sendJson, sendReusedError } from './reply.js';
import { isWarmUp } from './warm-up.js';
import { lingerIfBodyUnread } from './lingering-close.js';

export interface InferenceDeps {
  readonly config: ServerConfig;
  readonly tokens: TokenStore | undefined;
  readonly registry: ModelRegistry;
  readonly metrics: MetricsRegistry;
}

export interface PredictTarget {
  /** The model; when undefined, the request's `model_name` parameter names it. */
  readonly model: string | undefined;
  readonly version?: string;
  /** Headers the route adds for the handler (`explain`, `url_path`). */
  readonly headers?: Record<string, string>;
  /** Query parameters become handler parameters (SageMaker and legacy routes). */
  readonly queryParams?: boolean;
  /** The route's own reading of the body into parameters; undefined from it reads the body as any route does. */
  readonly readParams?: (request: FastifyRequest) => WireParam[] | undefined;
}

export async function enqueueRequest(request: FastifyRequest, reply: FastifyReply, deps: InferenceDeps, target: PredictTarget): Promise<FastifyReply> {
  const wire = await toWireRequest(request, target.headers ?? {}, target.queryParams === true, deps.tokens !== undefined, target.readParams);
  const name = target.model || stringParam(wire, 'model_name');
  if (!name) throw tsError('TSS_ERR_MODEL_NAME_REQUIRED');
  const model = deps.registry.get(name, target.version);
  if (request.method === 'OPTIONS') return sendJson(reply, 200, modelApi(model.name, 'inference'));
  // Fastify's clock starts as the request arrives, before its body is read.
  const arrivedAt = performance.now() - reply.elapsedTime;
  const job = enqueuePrediction(deps.metrics, model, target.version, wire, replySink(reply), isWarmUp(request.raw), arrivedAt);
  // A stateful model's answer may name a sequence no one else knows: one to a client gone names it to no one.
  if (model.stateful) job.clientGone = () => reply.raw.destroyed && !reply.raw.writableFinished;
  // The warm-up gives up on a request at its budget's end: unrun, it leaves the queue.
  if (job.quiet) reply.raw.once('close', () => reply.raw.writableFinished || model.withdraw(job));
  const trace = job.trace;
  if (trace) {
    request.traceId = trace.traceId;
    const header = deps.metrics.tracing?.header;
    if (header) reply.header(header, trace.header);
  }
  return reply;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The trace id of its prediction when traced, for its access-log line; '' otherwise. A field
     * every request has (http/listener.ts decorates them), not a WeakMap keyed by requests: an
     * entry per request in a WeakMap is work for the garbage collector (8 and 28 µs of the front
     * end's CPU an answer in two runs of bench/tracing.mjs's load).
     */
    traceId: string;
  }
}

/** The trace id of the request's prediction, when it was traced. */
export function traceIdOf(request: FastifyRequest): string | undefined {
  return request.traceId || undefined;
}

/**
 * A prediction route's onRequest hook: when the model the path names is refusing now (its queue
 * full, no worker), the 503 goes out before the body is read, parsed or made a job. Past capacity
 * most requests are refusals, and a refusal that cost what an answer costs took the CPU the workers
 * needed (docs/performance.md). Node discards the unread body and keeps the connection.
 * `modelOf` reads the model and version from the path; without one the handler decides as usual.
 */
export function refuseEarly<Route extends RouteGenericInterface>(
  deps: InferenceDeps,
  modelOf: (request: FastifyRequest) => { model: string; version?: string } | undefined = modelInPath,
): onRequestAsyncHookHandler<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, Route> {
  return async (request, reply) => {
    const target = request.method === 'OPTIONS' ? undefined : modelOf(request as FastifyRequest);
    const refusal = target && mayRefuseEarly(request.raw, deps, target.model, target.version);
    if (!refusal) return;
    lingerIfBodyUnread(request.raw);
    return sendReusedError(reply, refusal);
  };
}

/** The `:model` and `:version` parameters of a route's path. */
function modelInPath(request: FastifyRequest): { model: string; version?: string } | undefined {
  const { model, version } = request.params as { model?: string; version?: string };
  return model ? { model, version } : undefined;
}

/** Writes a job's answer to this reply: one body, or chunks when the handler streams. */
function replySink(reply: FastifyReply): JobSink {
  let stream: PassThrough | undefined;
  const applyHead = (r: JobResponse): void => {
    reply.code(r.status);
    if (r.phrase) reply.raw.statusMessage = r.phrase;
    reply.headers(r.headers);
  };
  return {
    intermediate(r) {
      if (!stream) {
        applyHead(r);
        stream = new PassThrough();
        reply.send(stream);
      }
      stream.write(r.body);
    },
    respond(r) {
      if (stream) {
        stream.end(r.body);
        return;
      }
      applyHead(r);
      reply.send(Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength));
    },
    fail(err, headers = {}) {
      if (stream) {
        stream.end(gson(err.toJSON()));
        return;
      }
      sendError(reply.headers(headers), err);
    },
  };
}

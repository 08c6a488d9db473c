/**
 * @module grpc/management
 * TorchServe's gRPC management service: each call reads its request as the REST call's parameters
 * and calls the same model service (models/model-service.ts), so both APIs check, answer and fail
 * alike: `msg` is REST's status text (or the describe / list JSON), an error becomes its gRPC
 * status with REST's message. In requests, 0 and "" mean "not set", as TorchServe reads them.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { isTsError, tsError } from '../errors.js';
import { registerCall, scaleCall, type Params } from '../http/params.js';
import { gson } from '../http/reply.js';
import { isRecord } from '../is-record.js';
import type { StatusAnswer } from '../models/model-service.js';
import { GrpcFailure, unary } from './calls.js';
import type { GrpcDeps } from './deps.js';

interface ModelRequest {
  model_name: string;
  model_version: string;
}

interface RegisterModelRequest {
  url: string;
  model_name: string;
  handler: string;
  runtime: string;
  batch_size: number;
  max_batch_delay: number;
  initial_workers: number;
  response_timeout: number;
  startup_timeout: number;
  synchronous: boolean;
  s3_sse_kms: boolean;
}

interface ScaleWorkerRequest extends ModelRequest {
  min_worker: number;
  max_worker: number;
  number_gpu: number;
  timeout: number;
  synchronous: boolean;
}

interface ManagementResponse {
  msg: string;
}

const SERVICE = 'org.pytorch.serve.grpc.management.ManagementAPIsService';

export function managementService(deps: GrpcDeps): UntypedServiceImplementation {
  const { service } = deps;
  const method = <Req>(name: string, run: (request: Req) => Promise<unknown>) =>
    unary<Req, ManagementResponse>(deps, 'management', `${SERVICE}/${name}`, async (request) => ({ msg: message(await modelApi(run(request))) }));
  return {
    DescribeModel: method<ModelRequest & { customized: boolean }>('DescribeModel', (r) =>
      service.describe(modelName(r), r.model_version || undefined, r.model_version !== 'all' && r.customized),
    ),
    // TorchServe passes limit 0 (the proto default) on and answers an empty page; 0 is "not set" here too.
    ListModels: method<{ limit: number; next_page_token: number }>('ListModels', async (r) => service.list(set(r.limit), set(r.next_page_token))),
    RegisterModel: method<RegisterModelRequest>('RegisterModel', (r) =>
      service.register(
        registerCall({
          ...params({
            url: r.url,
            model_name: r.model_name,
            handler: r.handler,
            runtime: r.runtime,
            batch_size: r.batch_size,
            max_batch_delay: r.max_batch_delay,
            initial_workers: r.initial_workers,
            response_timeout: r.response_timeout,
            startup_timeout: r.startup_timeout,
          }),
          // The proto's default is false where REST's is true: always say which.
          synchronous: String(r.synchronous),
        }),
      ),
    ),
    ScaleWorker: method<ScaleWorkerRequest>('ScaleWorker', (r) =>
      service.scale(
        modelName(r),
        r.model_version || undefined,
        scaleCall({
          ...params({ min_worker: r.min_worker, max_worker: r.max_worker, number_gpu: r.number_gpu, timeout: r.timeout }),
          synchronous: String(r.synchronous),
        }),
      ),
    ),
    // Without a version the version is "", as TorchServe reads the proto's default: no version has
    // that name, so the answer is set-default's own "Model version  does not exist for model m".
    SetDefault: method<ModelRequest>('SetDefault', (r) => service.setDefault(modelName(r), r.model_version)),
    UnregisterModel: method<ModelRequest>('UnregisterModel', (r) => service.unregister(modelName(r), r.model_version || undefined)),
  };
}

function modelName(r: ModelRequest): string {
  if (!r.model_name) throw GrpcFailure.of(tsError('TSS_ERR_MODEL_NAME_REQUIRED'));
  return r.model_name;
}

/** 0 is "not set" in a request. */
function set(n: number): number | undefined {
  return n === 0 ? undefined : n;
}

/**
 * The fields a client set, as TorchServe's parameters: non-empty strings and non-zero numbers. A
 * negative number is passed on, to fail as it does over REST (TorchServe's gRPC tests expect the
 * REST errors for them).
 */
function params(fields: Record<string, string | number>): Params {
  return Object.fromEntries(Object.entries(fields).flatMap(([k, v]) => (v !== '' && v !== 0 ? [[k, String(v)]] : [])));
}

/** Register and unregister fail while the model API is off; gRPC says it in its own words. */
async function modelApi<T>(answer: Promise<T>): Promise<T> {
  try {
    return await answer;
  } catch (err) {
    throw isTsError(err) && err.code === 'TSS_ERR_MODEL_API_DISABLED' ? tsError('TSS_ERR_GRPC_MODEL_API_DISABLED') : err;
  }
}

/** `msg`: a status answer's text, or the JSON REST answers with (describe, list). */
function message(answer: unknown): string {
  return isStatusAnswer(answer) ? answer.message : gson(answer).trimEnd();
}

function isStatusAnswer(answer: unknown): answer is StatusAnswer {
  return isRecord(answer) && typeof answer.outcome === 'string' && typeof answer.message === 'string';
}

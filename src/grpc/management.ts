/**
 * @module grpc/management
 * TorchServe's gRPC management service. Each call is the management REST call with the same
 * parameters, made in process, so both APIs check, answer and fail alike: `msg` is the REST
 * status text (or the describe / list JSON), a REST error becomes its gRPC status with the REST
 * message. In requests, 0 and "" mean "not set", as TorchServe reads them.
 */
import type { ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { tsError } from '../errors.js';
import { authorization, GrpcFailure, grpcStatusOf, unary } from './calls.js';
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

type Query = Record<string, string | number | boolean>;

const SERVICE = 'org.pytorch.serve.grpc.management.ManagementAPIsService';

export function managementService(deps: GrpcDeps): UntypedServiceImplementation {
  const method = <Req>(name: string, toRest: (request: Req) => { method: 'GET' | 'POST' | 'PUT' | 'DELETE'; url: string; query?: Query }) =>
    unary<Req, ManagementResponse>(deps, 'management', `${SERVICE}/${name}`, async (request, call) => {
      const rest = toRest(request);
      return callRest(deps, call, rest.method, rest.url, rest.query ?? {});
    });
  return {
    DescribeModel: method<ModelRequest & { customized: boolean }>('DescribeModel', (r) => ({
      method: 'GET',
      url: modelPath(r),
      query: r.customized ? { customized: true } : ({} as Query),
    })),
    // TorchServe passes limit 0 (the proto default) on and answers an empty page; 0 is "not set" here too.
    ListModels: method<{ limit: number; next_page_token: number }>('ListModels', (r) => ({
      method: 'GET',
      url: '/models',
      query: set({ limit: r.limit, next_page_token: r.next_page_token }),
    })),
    RegisterModel: method<RegisterModelRequest>('RegisterModel', (r) => ({
      method: 'POST',
      url: '/models',
      query: {
        ...set({
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
        synchronous: r.synchronous,
      },
    })),
    ScaleWorker: method<ScaleWorkerRequest>('ScaleWorker', (r) => ({
      method: 'PUT',
      url: modelPath(r),
      query: { ...set({ min_worker: r.min_worker, max_worker: r.max_worker, number_gpu: r.number_gpu, timeout: r.timeout }), synchronous: r.synchronous },
    })),
    // Without a version the version is "", as TorchServe reads the proto's default: no version has
    // that name, so the answer is set-default's own "Model version  does not exist for model m".
    SetDefault: method<ModelRequest>('SetDefault', (r) => ({
      method: 'PUT',
      url: `${modelPath({ ...r, model_version: '' })}/${encodeURIComponent(r.model_version)}/set-default`,
    })),
    UnregisterModel: method<ModelRequest>('UnregisterModel', (r) => ({ method: 'DELETE', url: modelPath(r) })),
  };
}

function modelPath(r: ModelRequest): string {
  if (!r.model_name) throw GrpcFailure.of(tsError('TSS_ERR_MODEL_NAME_REQUIRED'));
  const version = r.model_version ? `/${encodeURIComponent(r.model_version)}` : '';
  return `/models/${encodeURIComponent(r.model_name)}${version}`;
}

/**
 * The fields a client set: non-empty strings and non-zero numbers. A negative number is passed
 * on, to fail as it does over REST (TorchServe's gRPC tests expect the REST errors for them).
 */
function set(fields: Record<string, string | number>): Query {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== '' && v !== 0));
}

async function callRest(deps: GrpcDeps, call: ServerUnaryCall<unknown, unknown>, method: string, url: string, query: Query): Promise<ManagementResponse> {
  const auth = authorization(call);
  const res = await deps.managementRest({
    method: method as 'GET',
    url,
    query: Object.fromEntries(Object.entries(query).map(([k, v]) => [k, String(v)])),
    headers: auth ? { authorization: auth } : {},
  });
  const body = parseBody(res.body);
  if (res.statusCode >= 200 && res.statusCode < 300) {
    const text = isStatus(body) ? body.status : res.body.trimEnd();
    return { msg: text };
  }
  // Register and unregister answer 405 while the model API is off; gRPC says it in its own words.
  if (res.statusCode === 405) throw GrpcFailure.of(tsError('TSS_ERR_GRPC_MODEL_API_DISABLED'));
  const message = body && typeof body === 'object' && 'message' in body ? String(body.message) : res.body;
  throw new GrpcFailure(grpcStatusOf(res.statusCode), message);
}

function parseBody(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isStatus(body: unknown): body is { status: string } {
  return !!body && typeof body === 'object' && Object.keys(body).length === 1 && typeof (body as { status?: unknown }).status === 'string';
}

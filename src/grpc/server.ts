/**
 * @module grpc/server
 * The grpc-js side of a gRPC listener, loaded on its first connection (grpc/listener.ts): the
 * protos, the listener's services (grpc/inference.ts and, with the Open Inference Protocol on,
 * grpc/open-inference.ts; grpc/management.ts) and the credentials.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { GrpcListenConfig, ServerConfig } from '../config/server-config.js';
import { boundedDefinition, type Nesting } from './bounds.js';
import type { GrpcApi, GrpcDeps, GrpcInjector } from './deps.js';
import { inferenceService } from './inference.js';
import { managementService } from './management.js';
import { openInferenceService } from './open-inference.js';

// dist/src/grpc/ -> src/grpc/proto: the .proto files ship as sources, beside the code's sources.
const PROTO_DIR = fileURLToPath(new URL('../../../src/grpc/proto/', import.meta.url));

interface Service {
  readonly file: string;
  /** The service's full name in its proto. */
  readonly name: string;
  /** The full name clients call it by, when it is not the proto's. */
  readonly servedAs?: string;
  readonly implementation: (deps: GrpcDeps, name: string) => grpc.UntypedServiceImplementation;
  /** The nested messages whose entries are counted too (grpc/bounds.ts), by method. */
  readonly nesting?: Readonly<Record<string, Nesting>>;
}

const OIP_NAME = 'org.pytorch.serve.grpc.openinference.GRPCInferenceService';
const INFERENCE: Service = { file: 'inference.proto', name: 'org.pytorch.serve.grpc.inference.InferenceAPIsService', implementation: inferenceService };
// ModelInferRequest: each input tensor (5) and its contents (5), each requested output (6).
const OPEN_INFERENCE: Service = {
  file: 'open_inference_grpc.proto',
  name: OIP_NAME,
  implementation: openInferenceService,
  nesting: { ModelInfer: { 5: { 5: {} }, 6: {} } },
};
// KServe's grpc_predict_v2.proto declares the same service and messages in package `inference`.
const KSERVE_V2: Service = { ...OPEN_INFERENCE, servedAs: 'inference.GRPCInferenceService' };
const MANAGEMENT: Service = { file: 'management.proto', name: 'org.pytorch.serve.grpc.management.ManagementAPIsService', implementation: managementService };

/** The services of a listener: the inference port also hosts the Open Inference Protocol's when it is on. */
function servicesOf(api: GrpcApi, config: ServerConfig): Service[] {
  if (api === 'management') return [MANAGEMENT];
  if (api === 'kserve') return [KSERVE_V2];
  return config.openInferenceProtocol ? [INFERENCE, OPEN_INFERENCE] : [INFERENCE];
}

/** A service definition whose method paths name the service as `servedAs`. */
function renamed(definition: grpc.ServiceDefinition, from: string, servedAs: string): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(definition).map(([method, d]) => [method, { ...d, path: d.path.replace(`/${from}/`, `/${servedAs}/`) }]),
  ) as grpc.ServiceDefinition;
}

export function createInjector(api: GrpcApi, listen: GrpcListenConfig, deps: GrpcDeps): GrpcInjector {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': deps.config.maxRequestSize,
    'grpc.max_send_message_length': deps.config.maxResponseSize,
    ...(listen.maxConnectionAgeMs ? { 'grpc.max_connection_age_ms': listen.maxConnectionAgeMs } : {}),
    ...(listen.maxConnectionAgeGraceMs ? { 'grpc.max_connection_age_grace_ms': listen.maxConnectionAgeGraceMs } : {}),
  });
  for (const service of servicesOf(api, deps.config)) {
    const loaded = loadSync(service.file, { keepCase: true, longs: Number, defaults: true, includeDirs: [PROTO_DIR] })[service.name] as grpc.ServiceDefinition;
    const definition = boundedDefinition(loaded, service.nesting);
    const name = service.servedAs ?? service.name;
    server.addService(service.servedAs ? renamed(definition, service.name, service.servedAs) : definition, service.implementation(deps, name));
  }
  return server.createConnectionInjector(credentials(deps.config));
}

/** enable_grpc_ssl: TLS with private_key_file + certificate_file (checked at start-up), as TorchServe. */
function credentials(config: ServerConfig): grpc.ServerCredentials {
  const { privateKeyFile, certificateFile } = config.tls;
  if (!config.enableGrpcSsl || !privateKeyFile || !certificateFile) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(null, [{ private_key: readFileSync(privateKeyFile), cert_chain: readFileSync(certificateFile) }], false);
}

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
import type { LightMyRequestResponse, InjectOptions } from 'fastify';
import type { TokenStore } from '../auth/tokens.js';
import type { GrpcListenConfig, ServerConfig } from '../config/server-config.js';
import type { Loggers } from '../log/loggers.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import type { ModelRegistry } from '../wlm/model-registry.js';
import { inferenceService } from './inference.js';
import { managementService } from './management.js';
import { openInferenceService } from './open-inference.js';

export type GrpcApi = 'inference' | 'management';

export interface GrpcDeps {
  readonly config: ServerConfig;
  readonly registry: ModelRegistry;
  readonly metrics: MetricsRegistry;
  readonly tokens: TokenStore | undefined;
  readonly loggers: Loggers;
  /** The management REST API, called in process: gRPC management answers exactly as REST does. */
  readonly managementRest: (request: InjectOptions) => Promise<LightMyRequestResponse>;
}

export type GrpcInjector = grpc.ConnectionInjector;

// dist/src/grpc/ -> src/grpc/proto: the .proto files ship as sources, beside the code's sources.
const PROTO_DIR = fileURLToPath(new URL('../../../src/grpc/proto/', import.meta.url));

interface Service {
  readonly file: string;
  readonly name: string;
  readonly implementation: (deps: GrpcDeps) => grpc.UntypedServiceImplementation;
}

const INFERENCE: Service = { file: 'inference.proto', name: 'org.pytorch.serve.grpc.inference.InferenceAPIsService', implementation: inferenceService };
const OPEN_INFERENCE: Service = { file: 'open_inference_grpc.proto', name: 'org.pytorch.serve.grpc.openinference.GRPCInferenceService', implementation: openInferenceService };
const MANAGEMENT: Service = { file: 'management.proto', name: 'org.pytorch.serve.grpc.management.ManagementAPIsService', implementation: managementService };

/** The services of a listener: the inference port also hosts the Open Inference Protocol's when it is on. */
function servicesOf(api: GrpcApi, config: ServerConfig): Service[] {
  if (api === 'management') return [MANAGEMENT];
  return config.openInferenceProtocol ? [INFERENCE, OPEN_INFERENCE] : [INFERENCE];
}

export function createInjector(api: GrpcApi, listen: GrpcListenConfig, deps: GrpcDeps): GrpcInjector {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': deps.config.maxRequestSize,
    'grpc.max_send_message_length': deps.config.maxResponseSize,
    ...(listen.maxConnectionAgeMs ? { 'grpc.max_connection_age_ms': listen.maxConnectionAgeMs } : {}),
    ...(listen.maxConnectionAgeGraceMs ? { 'grpc.max_connection_age_grace_ms': listen.maxConnectionAgeGraceMs } : {}),
  });
  for (const service of servicesOf(api, deps.config)) {
    const definition = loadSync(service.file, { keepCase: true, longs: Number, defaults: true, includeDirs: [PROTO_DIR] });
    server.addService(definition[service.name] as grpc.ServiceDefinition, service.implementation(deps));
  }
  return server.createConnectionInjector(credentials(deps.config));
}

/** enable_grpc_ssl: TLS with private_key_file + certificate_file (checked at start-up), as TorchServe. */
function credentials(config: ServerConfig): grpc.ServerCredentials {
  const { privateKeyFile, certificateFile } = config.tls;
  if (!config.enableGrpcSsl || !privateKeyFile || !certificateFile) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(null, [{ private_key: readFileSync(privateKeyFile), cert_chain: readFileSync(certificateFile) }], false);
}

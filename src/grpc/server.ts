/**
 * @module grpc/server
 * The grpc-js side of a gRPC listener, loaded on its first connection (grpc/listener.ts): the
 * protos, one service per listener (grpc/inference.ts, grpc/management.ts) and the credentials.
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
const SERVICES: Record<GrpcApi, { file: string; service: string }> = {
  inference: { file: 'inference.proto', service: 'org.pytorch.serve.grpc.inference.InferenceAPIsService' },
  management: { file: 'management.proto', service: 'org.pytorch.serve.grpc.management.ManagementAPIsService' },
};

export function createInjector(api: GrpcApi, listen: GrpcListenConfig, deps: GrpcDeps): GrpcInjector {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': deps.config.maxRequestSize,
    'grpc.max_send_message_length': deps.config.maxResponseSize,
    ...(listen.maxConnectionAgeMs ? { 'grpc.max_connection_age_ms': listen.maxConnectionAgeMs } : {}),
    ...(listen.maxConnectionAgeGraceMs ? { 'grpc.max_connection_age_grace_ms': listen.maxConnectionAgeGraceMs } : {}),
  });
  const definition = loadSync(SERVICES[api].file, { keepCase: true, longs: Number, defaults: true, includeDirs: [PROTO_DIR] });
  const service = definition[SERVICES[api].service] as grpc.ServiceDefinition;
  server.addService(service, api === 'inference' ? inferenceService(deps) : managementService(deps));
  return server.createConnectionInjector(credentials(deps.config));
}

/** enable_grpc_ssl: TLS with private_key_file + certificate_file (checked at start-up), as TorchServe. */
function credentials(config: ServerConfig): grpc.ServerCredentials {
  const { privateKeyFile, certificateFile } = config.tls;
  if (!config.enableGrpcSsl || !privateKeyFile || !certificateFile) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(null, [{ private_key: readFileSync(privateKeyFile), cert_chain: readFileSync(certificateFile) }], false);
}

/**
 * @module grpc/deps
 * What the gRPC services are given, in a module of its own so that the services and the server
 * that assembles them do not import each other.
 */
import type { ConnectionInjector } from '@grpc/grpc-js';
import type { TokenStore } from '../auth/tokens.js';
import type { ServerConfig } from '../config/server-config.js';
import type { Loggers } from '../log/loggers.js';
import type { MetricsRegistry } from '../metrics/registry.js';
import type { ModelRegistry } from '../models/model-registry.js';
import type { ModelService } from '../models/model-service.js';

/** `kserve`: the listener KServe's runtime sends gRPC v2 to (8081), KServe's service alone. */
export type GrpcApi = 'inference' | 'management' | 'kserve';

export interface GrpcDeps {
  readonly config: ServerConfig;
  readonly registry: ModelRegistry;
  readonly metrics: MetricsRegistry;
  readonly tokens: TokenStore | undefined;
  readonly loggers: Loggers;
  /** What gRPC management calls, as REST's management API does. */
  readonly service: ModelService;
}

export type GrpcInjector = ConnectionInjector;

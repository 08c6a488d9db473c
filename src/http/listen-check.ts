/**
 * @module http/listen-check
 * Whether the server's ports can be opened, asked before anything else starts: a port in use is
 * said first and plainly (which key, which address, what to change), not after the start-up
 * models' workers were launched and stopped again. A port taken in between, by the listeners' own
 * binds, is said the same way.
 */
import { createServer } from 'node:net';
import type { GrpcListenConfig, ServerConfig } from '../config/server-config.js';

/** An address the server listens on, with the configuration key that sets it. */
interface Listening {
  readonly key: string;
  /** As the operator reads it: the URL of a REST API, `host:port` of a gRPC one. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
}

/** A start that cannot open one of its addresses: its message is for the operator as it is. */
export class ListenError extends Error {}

/** What keeps a port from being opened, by the bind's error code; undefined for any other error. */
export function listenProblem(code: string | undefined): string | undefined {
  switch (code) {
    case 'EADDRINUSE':
      return 'the port is in use';
    case 'EACCES':
      return 'the port needs privileges this user lacks';
    case 'EADDRNOTAVAIL':
      return 'the port is on an address this machine does not have';
    default:
      return undefined;
  }
}

/** Throws a ListenError for the first of the server's TCP addresses that cannot be opened now. */
export async function checkListeners(config: ServerConfig): Promise<void> {
  const probed = new Set<string>();
  for (const listening of listenersOf(config)) {
    const socket = `${listening.host}:${listening.port}`;
    if (probed.has(socket)) continue;
    probed.add(socket);
    const problem = listenProblem(await bindError(listening.host, listening.port));
    if (problem) throw new ListenError(cannotOpen(listening, problem, config));
  }
}

/** A bind's error (`listen EADDRINUSE ... 127.0.0.1:8080`) as checkListeners says it; other errors as they are. */
export function explainListenError(err: Error, config: ServerConfig): Error {
  const { code, port } = err as NodeJS.ErrnoException & { port?: number };
  const problem = listenProblem(code);
  const listening = listenersOf(config).find((l) => l.port === port);
  return problem && listening ? new ListenError(cannotOpen(listening, problem, config)) : err;
}

function cannotOpen(listening: Listening, problem: string, config: ServerConfig): string {
  return `${listening.key} ${listening.address} cannot be opened: ${problem}. Choose another with ${listening.key} in ${config.configFile ?? 'config.properties'}.`;
}

/**
 * The REST and gRPC addresses with a fixed port (0 is any free one; a unix socket has none), and
 * KServe's where they open: not on a port another listener holds (server.ts, freePort).
 */
function listenersOf(config: ServerConfig): Listening[] {
  const rest = [
    ['inference_address', config.inferenceAddress] as const,
    ['management_address', config.managementAddress] as const,
    ...(config.enableMetricsApi ? [['metrics_address', config.metricsAddress] as const] : []),
  ]
    .filter(([, a]) => a.scheme !== 'unix')
    .map(([key, a]) => ({ key, address: a.raw, host: a.host, port: a.port }));
  const grpc = [['grpc_inference_port', config.grpcInference] as const, ['grpc_management_port', config.grpcManagement] as const].map(([key, g]) =>
    grpcListening(key, g),
  );
  const own = [...rest, ...grpc].filter((l) => l.port !== 0);
  const { kserve } = config;
  if (!kserve) return own;
  const kserveListeners = [
    ...(kserve.http.scheme === 'unix' ? [] : [{ key: 'kserve_inference_address', address: kserve.http.raw, host: kserve.http.host, port: kserve.http.port }]),
    grpcListening('kserve_grpc_inference_port', kserve.grpc),
  ];
  return [...own, ...kserveListeners.filter((k) => k.port !== 0 && !own.some((l) => l.port === k.port))];
}

function grpcListening(key: string, listen: GrpcListenConfig): Listening {
  return { key, address: `${listen.host}:${listen.port}`, host: listen.host, port: listen.port };
}

/** The code of the error a bind to `host:port` gets now; undefined when it can be opened. */
function bindError(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}

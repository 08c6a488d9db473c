/**
 * @module grpc/listener
 * TorchServe's two gRPC listeners (inference on 7070, management on 7071), costing nothing until
 * a client connects: start-up binds a plain TCP server, and grpc-js with the protos (about 19 MB
 * of a server that may never see a gRPC call) is loaded on the first connection. Every connection
 * is then handed to grpc-js's HTTP/2 server through its connection injector.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { ConfigError, type GrpcListenConfig } from '../config/server-config.js';
import { refuseWeakGrpcKey } from '../http/tls.js';
import type { GrpcApi, GrpcDeps, GrpcInjector } from './deps.js';

export interface GrpcListener {
  /** `host:port` as bound (the port the OS chose for 0). */
  readonly address: string;
  /** Stops accepting; resolves once the connections have ended (calls get drain_timeout). */
  close(): Promise<void>;
  /** Ends every connection still open, one grpc-js has not taken yet included (a client that sent nothing). */
  cut(): void;
}

export async function listenGrpc(api: GrpcApi, listen: GrpcListenConfig, deps: GrpcDeps): Promise<GrpcListener> {
  const { enableGrpcSsl, tls } = deps.config;
  if (enableGrpcSsl && (!tls.privateKeyFile || !tls.certificateFile)) {
    throw new ConfigError('enable_grpc_ssl needs private_key_file and certificate_file');
  }
  if (enableGrpcSsl) refuseWeakGrpcKey(tls);
  let injector: Promise<GrpcInjector> | undefined;
  const sockets = new Set<Socket>();
  const tcp = createServer((socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // Until grpc-js owns the socket, a client's reset is ours to absorb.
    socket.on('error', () => socket.destroy());
    injector ??= import('./server.js').then((m) => m.createInjector(api, listen, deps));
    injector.then(
      (i) => i.injectConnection(socket),
      (err: Error) => {
        deps.loggers.server.error({ err }, `gRPC ${api} API failed to start`);
        socket.destroy();
      },
    );
  });
  await bind(tcp, listen);
  const bound = tcp.address();
  const port = typeof bound === 'object' && bound ? bound.port : listen.port;
  return {
    address: `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${port}`,
    async close() {
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      const grpc = injector && (await injector.catch(() => undefined));
      // Calls in flight get drain_timeout to finish, as REST requests do; then their connections are cut.
      grpc?.drain(deps.config.drainTimeout * 1000);
      grpc?.destroy();
      await closed;
    },
    cut() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

function bind(server: Server, listen: GrpcListenConfig): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

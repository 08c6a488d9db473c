/**
 * @module http/tls
 * HTTPS listeners, as TorchServe's: an `https://` address serves TLS with the key material of
 * config.properties: a PKCS12 `keystore` (+ `keystore_pass`), else `private_key_file` +
 * `certificate_file` (PEM), else a self-signed certificate made at start-up. Plain HTTP sent to
 * an HTTPS listener is answered in clear text, 403, instead of a failed handshake the client
 * cannot explain.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server, type ServerOptions } from 'node:https';
import type { Socket } from 'node:net';
import { ConfigError, type TlsConfig } from '../config/server-config.js';
import { gson } from './reply.js';

export type TlsMaterial = Pick<ServerOptions, 'key' | 'cert' | 'pfx' | 'passphrase'>;

/** The key material to serve; `onSelfSigned` is told when none is configured. */
export async function tlsMaterial(tls: TlsConfig, onSelfSigned: () => void): Promise<TlsMaterial> {
  if (tls.keystore) {
    if (!/^(pkcs12|p12)$/i.test(tls.keystoreType)) {
      throw new ConfigError(
        `keystore_type ${tls.keystoreType} is not supported: convert the keystore to PKCS12 (keytool -importkeystore -deststoretype PKCS12)`,
      );
    }
    return { pfx: readKeyFile(tls.keystore, 'keystore'), passphrase: tls.keystorePass };
  }
  if (tls.privateKeyFile || tls.certificateFile) {
    if (!tls.privateKeyFile || !tls.certificateFile) throw new ConfigError('private_key_file and certificate_file go together: set both, or a keystore');
    return { key: readKeyFile(tls.privateKeyFile, 'private_key_file'), cert: readKeyFile(tls.certificateFile, 'certificate_file') };
  }
  onSelfSigned();
  return selfSigned();
}

function readKeyFile(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`Cannot read ${key} ${path}: ${(err as Error).message}`);
  }
}

/** A certificate for localhost, 127.0.0.1 and ::1, valid for a year. */
async function selfSigned(): Promise<TlsMaterial> {
  // Loaded only here: X.509 building is a few MB of code that a server with certificates never needs.
  const { generate } = await import('selfsigned');
  const notAfterDate = new Date();
  notAfterDate.setFullYear(notAfterDate.getFullYear() + 1);
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate,
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}

const TLS_HANDSHAKE = 0x16;
const FIRST_BYTE_TIMEOUT_MS = 120_000;

/** An HTTPS server for fastify's serverFactory, answering plain HTTP with TorchServe's 403. */
export function httpsServer(material: TlsMaterial, handler: Parameters<typeof createServer>[1]): Server {
  const server = createServer(material, handler);
  const startTls = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    // Until TLS owns the socket, a client's reset is ours to absorb.
    const dropOnError = (): void => void socket.destroy();
    socket.on('error', dropOnError);
    socket.setTimeout(FIRST_BYTE_TIMEOUT_MS, () => socket.destroy());
    socket.once('data', (chunk: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      // The TLS socket reads what is buffered here before the rest from the wire.
      socket.unshift(chunk);
      if (chunk[0] !== TLS_HANDSHAKE) return refusePlainHttp(socket);
      socket.off('error', dropOnError);
      for (const listener of startTls) listener.call(server, socket);
    });
  });
  return server;
}

function refusePlainHttp(socket: Socket): void {
  const body = gson({ status: 'This TorchServe instance only accepts HTTPS requests' });
  // Destroyed once written: the paused socket would never read the client's end of the stream.
  socket.end(
    'HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n' + `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

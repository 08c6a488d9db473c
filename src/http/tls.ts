/**
 * @module http/tls
 * HTTPS listeners, as TorchServe's: an `https://` address serves TLS with the key material of
 * config.properties: a PKCS12 `keystore` (+ `keystore_pass`), else `private_key_file` +
 * `certificate_file` (PEM), else a self-signed certificate made at start-up. A key under the 2048
 * bits OpenSSL asks for by default, which TorchServe served, is served with a warning. Plain HTTP sent to
 * an HTTPS listener is answered in clear text, 403, instead of a failed handshake the client
 * cannot explain.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type ServerOptions } from 'node:https';
import type { Socket } from 'node:net';
import { createSecureContext, DEFAULT_CIPHERS } from 'node:tls';
import { ConfigError, type TlsConfig } from '../config/server-config.js';
import { closeLingering } from './lingering-close.js';
import { gson } from './reply.js';

export type TlsMaterial = Pick<ServerOptions, 'key' | 'cert' | 'pfx' | 'passphrase' | 'ciphers'>;

interface TlsLog {
  warn(message: string): void;
}

/** The key material to serve; the log is told when none is configured, or a weak key is served. */
export async function tlsMaterial(tls: TlsConfig, log: TlsLog): Promise<TlsMaterial> {
  if (tls.keystore) {
    if (!/^(pkcs12|p12)$/i.test(tls.keystoreType)) {
      throw new ConfigError(
        `keystore_type ${tls.keystoreType} is not supported: convert the keystore to PKCS12 (keytool -importkeystore -deststoretype PKCS12)`,
      );
    }
    const material = { pfx: readKeyFile(tls.keystore, 'keystore'), passphrase: tls.keystorePass };
    return servingWeakKeys(material, `keystore ${tls.keystore}`, log);
  }
  if (tls.privateKeyFile || tls.certificateFile) {
    if (!tls.privateKeyFile || !tls.certificateFile) throw new ConfigError('private_key_file and certificate_file go together: set both, or a keystore');
    const material = { key: readKeyFile(tls.privateKeyFile, 'private_key_file'), cert: readKeyFile(tls.certificateFile, 'certificate_file') };
    return servingWeakKeys(material, `private_key_file ${tls.privateKeyFile} (certificate_file ${tls.certificateFile})`, log);
  }
  log.warn('HTTPS without keystore or private_key_file/certificate_file: serving a self-signed certificate for localhost');
  return selfSigned();
}

/**
 * enable_grpc_ssl's key material, checked at start-up: grpc-js keeps OpenSSL's default security
 * level, so a key under 2048 bits, which the HTTPS listeners serve with a warning, stops the start
 * with the file, its size and the remedy, where the gRPC listener would fail each connection.
 */
export function refuseWeakGrpcKey(tls: TlsConfig): void {
  if (!tls.privateKeyFile || !tls.certificateFile) return;
  const material = { key: readKeyFile(tls.privateKeyFile, 'private_key_file'), cert: readKeyFile(tls.certificateFile, 'certificate_file') };
  if (!keyTooSmall(material)) return;
  throw new ConfigError(
    `enable_grpc_ssl: private_key_file ${tls.privateKeyFile} (certificate_file ${tls.certificateFile}): its ${keyDescription(material)}; gRPC's TLS serves keys of 2048 bits or more. Make a new key and certificate: ${NEW_KEY_COMMAND}`,
  );
}

/** OpenSSL's level 1: RSA keys of 1024 bits and up, which Java (TorchServe) serves and level 2 refuses. */
const WEAK_KEY_CIPHERS = `${DEFAULT_CIPHERS}:@SECLEVEL=1`;
const NEW_KEY_COMMAND = 'openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 365 -subj /CN=<host>';

/**
 * Key material whose key OpenSSL's default security level (2) refuses, "ee key too small": a
 * 1024-bit RSA key, TorchServe's own test key among them, is served at level 1 with a warning
 * that names the file, its key and the remedy, so that a TorchServe configuration starts as it
 * did; a smaller one stops the start with the same words.
 */
function servingWeakKeys(material: TlsMaterial, file: string, log: TlsLog): TlsMaterial {
  // Node.js 22 serves a 1024-bit key at its default level, 24 refuses it: the warning is the same on both.
  if (!keyTooSmall(material) && (rsaKeyBits(material) ?? 2048) >= 2048) return material;
  const key = `${file}: its ${keyDescription(material)}`;
  const weak = { ...material, ciphers: WEAK_KEY_CIPHERS };
  if (keyTooSmall(weak)) {
    throw new ConfigError(
      `${key}, too small to serve even at OpenSSL security level 1 (1024 bits at the least, 2048 are the default). Make a new key and certificate: ${NEW_KEY_COMMAND}`,
    );
  }
  log.warn(
    `WEAK KEY: ${key}; OpenSSL's default security level (Node.js 24's) refuses keys under 2048 bits, TorchServe (Java) served it. Serving it at OpenSSL security level 1 for now (clients that check key sizes refuse it); replace it: ${NEW_KEY_COMMAND}`,
  );
  return weak;
}

/** Whether OpenSSL refuses the material's key at the security level its ciphers set; other faults are left to the listener to report. */
function keyTooSmall(material: TlsMaterial): boolean {
  try {
    createSecureContext(material);
    return false;
  } catch (err) {
    return /ee key too small/.test((err as Error).message);
  }
}

/** "RSA key is 1024 bits", from a PEM certificate; a PKCS12 keystore is not read outside TLS. */
function keyDescription(material: TlsMaterial): string {
  const bits = rsaKeyBits(material);
  return bits ? `RSA key is ${bits} bits` : 'key is smaller than OpenSSL allows by default';
}

/** The size of a PEM certificate's RSA key; undefined for other keys and for a PKCS12 keystore. */
function rsaKeyBits(material: TlsMaterial): number | undefined {
  if (!material.cert) return undefined;
  try {
    const { publicKey } = new X509Certificate(material.cert as Buffer);
    return publicKey.asymmetricKeyType === 'rsa' ? publicKey.asymmetricKeyDetails?.modulusLength : undefined;
  } catch {
    return undefined;
  }
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

/**
 * An HTTPS server for fastify's serverFactory, answering plain HTTP with TorchServe's 403;
 * `onPlainHttp` hears each such answer, with the first bytes the client sent (its access-log line).
 */
export function httpsServer(
  material: TlsMaterial,
  handler: Parameters<typeof createServer>[1],
  onPlainHttp: (socket: Socket, head: Buffer) => void = () => undefined,
): Server {
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
      if (chunk[0] !== TLS_HANDSHAKE) {
        refusePlainHttp(socket);
        return onPlainHttp(socket, chunk);
      }
      socket.off('error', dropOnError);
      for (const listener of startTls) listener.call(server, socket);
    });
  });
  return server;
}

function refusePlainHttp(socket: Socket): void {
  const body = gson({ status: 'This TorchServe instance only accepts HTTPS requests' });
  socket.write(
    'HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n' + `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  // What the client still sends is read and thrown away for a while: closed unread, the
  // connection would be reset, and the 403 with it.
  closeLingering(socket);
}

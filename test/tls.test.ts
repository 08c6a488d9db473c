// HTTPS listeners as TorchServe's: key material from PEM files, a PKCS12 keystore, or a
// self-signed certificate made at start-up; plain HTTP to an HTTPS port answered with a 403.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { join } from 'node:path';
import { createSecureContext, type PeerCertificate, type TLSSocket } from 'node:tls';
import { generate } from 'selfsigned';
import t, { type Test } from 'tap';
import { buildMnistMar, MNIST_DIR, sharedServer, startTestServer, tempDir, type TestServer } from './helpers.js';

interface Answer {
  status: number;
  body: string;
  cert: PeerCertificate;
}

/** One HTTPS request; `ca` trusts that certificate, without it any certificate is accepted. */
function httpsCall(url: string, opts: { method?: string; body?: Buffer; ca?: string } = {}): Promise<Answer> {
  const tls: RequestOptions = opts.ca ? { ca: opts.ca, servername: 'localhost' } : { rejectUnauthorized: false };
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: opts.method ?? 'GET', ...tls }, (res) => {
      const cert = (res.socket as TLSSocket).getPeerCertificate();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), cert }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * A server whose inference listener is HTTPS, serving mnist; `withModel` false for a test that only
 * pings it (no worker to start). A start that fails keeps its model: it fails after the model's load.
 */
function serveHttps(t: Test, properties: Record<string, string>, withModel = true): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => buildMnistMar(store),
    properties: { ...(withModel ? { load_models: 'mnist.mar' } : {}), inference_address: 'https://127.0.0.1:0', ...properties },
  });
}

/** The self-signed server of the first two tests, which only ask it questions. */
const selfSigned = sharedServer((t) => serveHttps(t, {}));

async function certificateFiles(t: Test): Promise<{ dir: string; key: string; cert: string; pem: string }> {
  const dir = tempDir(t);
  const pems = await generate([{ name: 'commonName', value: 'tsserve-test' }], {
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }] }],
  });
  writeFileSync(join(dir, 'key.pem'), pems.private);
  writeFileSync(join(dir, 'cert.pem'), pems.cert);
  return { dir, key: join(dir, 'key.pem'), cert: join(dir, 'cert.pem'), pem: pems.cert };
}

const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));

t.test('without key material: a self-signed certificate for localhost; predictions over TLS', async (t) => {
  const server = await selfSigned();
  t.match(server.urls.inference, /^https:\/\/127\.0\.0\.1:\d+$/);
  const ping = await httpsCall(`${server.urls.inference}/ping`);
  t.equal(ping.status, 200);
  t.equal(ping.cert.subject.CN, 'localhost');
  t.match(ping.cert.subjectaltname, /IP Address:127\.0\.0\.1/);
  const digit = await httpsCall(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: seven });
  t.same([digit.status, digit.body], [200, '7']);
  t.equal((await fetch(`${server.urls.management}/models`)).status, 200, 'the management listener stays plain HTTP');
});

t.test('plain HTTP to an HTTPS listener: 403 in clear text, and the listener keeps serving TLS', async (t) => {
  const server = await selfSigned();
  const plain = await fetch(server.urls.inference.replace('https:', 'http:') + '/ping');
  t.equal(plain.status, 403);
  t.same(await plain.json(), { status: 'This TorchServe instance only accepts HTTPS requests' });
  t.equal((await httpsCall(`${server.urls.inference}/ping`)).status, 200);
});

t.test('private_key_file + certificate_file (PEM): the client can verify the server against that certificate', async (t) => {
  const files = await certificateFiles(t);
  const server = await serveHttps(t, { private_key_file: files.key, certificate_file: files.cert }, false);
  const ping = await httpsCall(`${server.urls.inference}/ping`, { ca: files.pem });
  t.equal(ping.status, 200);
  t.equal(ping.cert.subject.CN, 'tsserve-test');
});

t.test('a PKCS12 keystore with keystore_pass, made as a TorchServe user makes one', async (t) => {
  const files = await certificateFiles(t);
  const keystore = join(files.dir, 'keystore.p12');
  execFileSync('openssl', ['pkcs12', '-export', '-inkey', files.key, '-in', files.cert, '-out', keystore, '-passout', 'pass:s3cret']);
  const server = await serveHttps(t, { keystore, keystore_pass: 's3cret', keystore_type: 'PKCS12' }, false);
  const ping = await httpsCall(`${server.urls.inference}/ping`, { ca: files.pem });
  t.equal(ping.status, 200);
  t.equal(ping.cert.subject.CN, 'tsserve-test');
});

t.test('key material that cannot serve fails start-up with a message that says why', async (t) => {
  const files = await certificateFiles(t);
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ keystore: files.key, keystore_type: 'JKS' }, /keystore_type JKS is not supported: convert the keystore to PKCS12/],
    [{ private_key_file: files.key }, /private_key_file and certificate_file go together/],
    [{ private_key_file: join(files.dir, 'missing.pem'), certificate_file: files.cert }, /Cannot read private_key_file .*missing\.pem/],
  ];
  for (const [properties, message] of cases) {
    await t.rejects(serveHttps(t, properties), message, JSON.stringify(properties));
  }
});

t.test(
  "a 1024-bit RSA key, as TorchServe's own HTTPS test key: served, with a warning naming the file, its size and the remedy; a 512-bit one stops the start so",
  async (t) => {
    const dir = tempDir(t);
    const made = (bits: number): { key: string; cert: string } => {
      const key = join(dir, `key${bits}.pem`);
      const cert = join(dir, `cert${bits}.pem`);
      execFileSync('openssl', ['genrsa', '-out', key, String(bits)], { stdio: 'ignore' });
      execFileSync('openssl', ['req', '-x509', '-key', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost'], { stdio: 'ignore' });
      return { key, cert };
    };
    const weak = made(1024);
    const log: string[] = [];
    const server = await startTestServer(t, {
      prepare: (store) => buildMnistMar(store),
      properties: { load_models: 'mnist.mar', inference_address: 'https://127.0.0.1:0', private_key_file: weak.key, certificate_file: weak.cert },
      serverLog: (line) => log.push(line),
    });
    const digit = await httpsCall(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: seven });
    t.same([digit.status, digit.body], [200, '7'], 'predictions over TLS with that key');
    const warning = log.find((l) => l.includes('WEAK KEY'));
    t.ok(
      warning?.includes(`private_key_file ${weak.key} (certificate_file ${weak.cert}): its RSA key is 1024 bits`),
      'the warning names the files and the size',
    );
    t.match(warning, /openssl req -x509 -newkey rsa:2048/, 'and the remedy');

    const keystore = join(dir, 'weak.p12');
    execFileSync('openssl', ['pkcs12', '-export', '-inkey', weak.key, '-in', weak.cert, '-out', keystore, '-passout', 'pass:changeit']);
    const fromKeystore = await serveHttps(t, { keystore, keystore_pass: 'changeit' }, false);
    t.equal((await httpsCall(`${fromKeystore.urls.inference}/ping`)).status, 200, 'a PKCS12 keystore holding it serves too');

    // gRPC's TLS serves what this Node.js's OpenSSL level serves: 22 takes a 1024-bit key, 24 does not.
    const grpcWeak = { enable_grpc_ssl: 'true', private_key_file: weak.key, certificate_file: weak.cert };
    if (!nodeRefusesKey(weak)) {
      const grpcServer = await startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: grpcWeak });
      t.equal((await fetch(`${grpcServer.urls.inference}/ping`)).status, 200, 'gRPC serves it where this Node.js does');
    } else {
      await t.rejects(
        startTestServer(t, {
          prepare: (store) => buildMnistMar(store),
          properties: grpcWeak,
        }),
        {
          message: new RegExp(
            `^enable_grpc_ssl: private_key_file ${weak.key} \\(certificate_file ${weak.cert}\\): its RSA key is 1024 bits; .*openssl req -x509 -newkey rsa:2048`,
          ),
        },
        'gRPC, whose TLS cannot serve it, stops the start in the same words',
      );
    }

    const tiny = made(512);
    await t.rejects(serveHttps(t, { private_key_file: tiny.key, certificate_file: tiny.cert }), {
      message: new RegExp(
        `^private_key_file ${tiny.key} \\(certificate_file ${tiny.cert}\\): its RSA key is 512 bits, too small to serve.*openssl req -x509 -newkey rsa:2048`,
      ),
    });
  },
);

/** Whether this Node.js's OpenSSL refuses the key at its default security level. */
function nodeRefusesKey(material: { key: string; cert: string }): boolean {
  try {
    createSecureContext({ key: readFileSync(material.key), cert: readFileSync(material.cert) });
    return false;
  } catch {
    return true;
  }
}

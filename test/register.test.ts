// Registration from an allowed http URL: downloaded into the store from a real file server, with a
// size limit. The parameters and settings a registration takes, and the URLs allowed by default,
// are test/unit/registration.test.ts's, in process.
import { createServer, type Server } from 'node:http';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMnistMar, startTestServer, tempDir } from './helpers.js';

/** A static file server on 127.0.0.1 that serves `files` by name. */
async function fileServer(t: Test, files: Record<string, Buffer>): Promise<string> {
  const server: Server = createServer((req, res) => {
    const body = files[(req.url ?? '').slice(1)];
    res.writeHead(body ? 200 : 404).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const address = server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

t.test('an allowed http URL is downloaded into the store, with a size limit', async (t) => {
  const source = tempDir(t);
  const mar = readFileSync(buildMnistMar(source, 'remote'));
  const base = await fileServer(t, { 'remote.mar': mar, 'big.mar': mar });
  const server = await startTestServer(t, {
    properties: { allowed_urls: 'http://127.0.0.1:[0-9]+/.*', max_download_size: String(mar.length + 10) },
  });
  const mgmt = server.urls.management;
  const ok = await fetch(`${mgmt}/models?url=${base}/remote.mar&initial_workers=0`, { method: 'POST' });
  t.equal(ok.status, 200, 'downloaded and registered');
  t.ok(existsSync(join(server.store, 'remote.mar')), 'saved in the model store under its file name');

  const again = await fetch(`${mgmt}/models?url=${base}/remote.mar&model_name=other`, { method: 'POST' });
  t.equal(again.status, 500);
  t.same(await again.json(), { code: 500, type: 'InternalServerException', message: 'Model file already exists remote.mar' });

  const missing = await fetch(`${mgmt}/models?url=${base}/nothing.mar`, { method: 'POST' });
  t.equal(missing.status, 400);
  t.same(await missing.json(), { code: 400, type: 'DownloadArchiveException', message: `Failed to download archive from: ${base}/nothing.mar` });

  t.equal((await fetch(`${mgmt}/models/remote`, { method: 'DELETE' })).status, 200);
  t.notOk(existsSync(join(server.store, 'remote.mar')), 'unregistering removes what was downloaded');

  const limited = await startTestServer(t, {
    properties: { allowed_urls: 'http://127.0.0.1:[0-9]+/.*', max_download_size: String(mar.length - 1) },
  });
  const big = await fetch(`${limited.urls.management}/models?url=${base}/big.mar`, { method: 'POST' });
  t.equal(big.status, 400, 'over max_download_size');
  t.same(readdirSync(limited.store), [], 'nothing partial left in the store');
});

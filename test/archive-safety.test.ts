// Archives that try to write outside their model directory are refused at registration, and
// nothing of them is left on disk.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import AdmZip from 'adm-zip';
import t from 'tap';
import { MODELS_ROOT } from '../dist/src/archive/extract.js';
import { startTestServer } from './helpers.js';

const MANIFEST = JSON.stringify({ runtime: 'python', model: { modelName: 'evil', handler: 'base_handler', modelVersion: '1.0' } });

/** A zip whose entry `placeholder` is renamed to `name` (same length) in the raw bytes. */
function zipWithEntry(file: string, placeholder: string, name: string): void {
  const zip = new AdmZip();
  zip.addFile('MAR-INF/MANIFEST.json', Buffer.from(MANIFEST));
  zip.addFile(placeholder, Buffer.from('pwned'));
  let bytes = zip.toBuffer();
  const from = Buffer.from(placeholder);
  for (let i = bytes.indexOf(from); i >= 0; i = bytes.indexOf(from, i + 1)) bytes.write(name, i, 'latin1');
  writeFileSync(file, bytes);
  bytes = readFileSync(file);
  if (!bytes.includes(Buffer.from(name))) throw new Error('could not craft the archive');
}

t.test('entries escaping the model directory are refused with 400 and leave nothing behind', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      zipWithEntry(join(store, 'slip.mar'), 'xx/xx/evil.txt', '../../evil.txt');
      zipWithEntry(join(store, 'abs.mar'), 'xtmp/evil2.txt', '/tmp/evil2.txt');
    },
  });
  // This process's extractions only (named by its pid): other test files extract beside it at the same time.
  const ours = (): number => (existsSync(MODELS_ROOT) ? readdirSync(MODELS_ROOT).filter((n) => n.startsWith(`${process.pid}-`)).length : 0);
  const before = ours();
  for (const [mar, entry] of [
    ['slip.mar', '../../evil.txt'],
    ['abs.mar', '/tmp/evil2.txt'],
  ] as const) {
    const res = await fetch(`${server.urls.management}/models?url=${mar}`, { method: 'POST' });
    t.equal(res.status, 400, `${mar} refused`);
    t.same(await res.json(), { code: 400, type: 'InvalidModelException', message: `Archive entry escapes the model directory: ${entry}` });
  }
  t.notOk(existsSync(join(MODELS_ROOT, '..', 'evil.txt')), 'nothing written outside');
  t.notOk(existsSync('/tmp/evil2.txt'), 'no absolute path written');
  t.equal(ours(), before, 'no extraction directory left');
  t.same(await (await fetch(`${server.urls.management}/models`)).json(), { models: [] }, 'nothing registered');
});

t.test('a file that is not a zip, and a zip without a model, are clear 400s', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      writeFileSync(join(store, 'junk.mar'), 'this is not a zip file');
      const zip = new AdmZip();
      zip.addFile('MAR-INF/MANIFEST.json', Buffer.from('{not json'));
      zip.writeZip(join(store, 'badjson.mar'));
    },
  });
  const junk = await fetch(`${server.urls.management}/models?url=junk.mar`, { method: 'POST' });
  t.equal(junk.status, 400);
  t.match(await junk.json(), { type: 'InvalidModelException', message: /^Failed to open model archive junk.mar/ });
  const badJson = await fetch(`${server.urls.management}/models?url=badjson.mar`, { method: 'POST' });
  t.equal(badJson.status, 400);
  t.match(await badJson.json(), { message: 'Failed to parse signature.json.' });
});

t.test('url names cannot leave the model store', async (t) => {
  const server = await startTestServer(t);
  for (const url of ['../x.mar', '..%2Fx.mar', 'a/../../x.mar']) {
    const res = await fetch(`${server.urls.management}/models?url=${url}`, { method: 'POST' });
    t.equal(res.status, 404, url);
    t.match(await res.json(), { type: 'ModelNotFoundException', message: /^Relative path is not allowed in url/ });
  }
  const outside = await fetch(`${server.urls.management}/models?url=file:///etc/passwd`, { method: 'POST' });
  t.equal(outside.status, 404, 'a file URL outside the model store is not allowed by default');
  t.match(await outside.json(), { type: 'ModelNotFoundException', message: /does not match any allowed URL/ });
});

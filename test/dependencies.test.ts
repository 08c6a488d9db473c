// install_py_dep_per_model=true, for npm: the package.json an archive names as its requirements
// file is installed into the model's node_modules at registration (real npm, file: dependencies
// vendored in the archive, so no network), and its handler imports it beside tsserve.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import AdmZip from 'adm-zip';
import t, { type Test } from 'tap';
import { buildMar, errorBody, startTestServer, tempDir, type TestServer } from './helpers.js';

/** A handler that needs the npm package `shout`, vendored (the extra files folder lands at the archive's top, so `file:./shout`). */
function shoutModel(t: Test, dependency: string): { handler: string; packageJson: string; vendor: string } {
  const dir = tempDir(t);
  const vendor = join(dir, 'vendor');
  mkdirSync(join(vendor, 'shout'), { recursive: true });
  writeFileSync(join(vendor, 'shout', 'package.json'), JSON.stringify({ name: 'shout', version: '1.0.0', main: 'index.js' }));
  writeFileSync(join(vendor, 'shout', 'index.js'), "module.exports = (s) => s.toUpperCase() + '!';\n");
  const packageJson = join(dir, 'deps.json');
  writeFileSync(packageJson, JSON.stringify({ name: 'shout-model', version: '1.0.0', private: true, dependencies: { shout: dependency } }));
  const handler = join(dir, 'shout_handler.ts');
  writeFileSync(join(dir, 'requirements.txt'), 'numpy\n');
  writeFileSync(
    handler,
    [
      "import shout from 'shout';",
      "import { requestPayload, type RequestInput } from 'tsserve';",
      '',
      'export async function handle(batch: RequestInput[] | null): Promise<string[] | undefined> {',
      '  return batch?.map((row) => shout(String(requestPayload(row))));',
      '}',
    ].join('\n'),
  );
  return { handler, packageJson, vendor };
}

async function serveShout(t: Test, dependency: string, install: boolean): Promise<TestServer> {
  const files = shoutModel(t, dependency);
  return startTestServer(t, {
    prepare: (store) =>
      buildMar(store, { modelName: 'shout', version: '1.0', handler: files.handler, requirementsFile: files.packageJson, extraFiles: files.vendor }),
    properties: { install_py_dep_per_model: String(install) },
  });
}

function register(server: TestServer): Promise<Response> {
  return fetch(`${server.urls.management}/models?url=shout.mar&initial_workers=1&synchronous=true`, { method: 'POST' });
}

t.test('the dependencies a package.json declares are installed at registration; the handler imports them and tsserve', async (t) => {
  const server = await serveShout(t, 'file:./shout', true);
  const res = await register(server);
  t.equal(res.status, 200, await res.text());
  const answer = await fetch(`${server.urls.inference}/predictions/shout`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } });
  t.equal(await answer.text(), 'HELLO!');
});

t.test('without install_py_dep_per_model nothing is installed, and the worker cannot load the handler (as in TorchServe)', async (t) => {
  const server = await serveShout(t, 'file:./shout', false);
  const res = await register(server);
  t.equal(res.status, 500);
  t.equal((await errorBody(res)).message, 'Failed to start workers for model shout version: 1.0');
});

t.test("a failed install is a 400 with npm's reason, and nothing stays registered", async (t) => {
  const server = await serveShout(t, 'file:./nowhere.tgz', true);
  const res = await register(server);
  t.equal(res.status, 400);
  const body = await errorBody(res);
  t.equal(body.type, 'ModelException');
  t.match(body.message, /^Custom npm package installation failed for model shout: enoent ENOENT: no such file or directory, open '.*nowhere\.tgz'$/);
  t.same(await (await fetch(`${server.urls.management}/models`)).json(), { models: [] });
});

t.test("a requirements file outside the archive's top level is refused; a pip requirements.txt is left alone", async (t) => {
  const files = shoutModel(t, 'file:./shout');
  const log: string[] = [];
  const server = await startTestServer(t, {
    prepare: (store) => {
      const zip = new AdmZip();
      const manifest = { runtime: 'python', model: { modelName: 'escape', modelVersion: '1.0', handler: 'base_handler', requirementsFile: '../../deps.json' } };
      zip.addFile('MAR-INF/MANIFEST.json', Buffer.from(JSON.stringify(manifest)));
      zip.writeZip(join(store, 'outside.mar'));
      buildMar(store, { modelName: 'pip', version: '1.0', handler: files.handler, requirementsFile: join(files.vendor, '..', 'requirements.txt') });
    },
    properties: { install_py_dep_per_model: 'true' },
    serverLog: (line) => log.push(line),
  });
  const outside = await fetch(`${server.urls.management}/models?url=outside.mar`, { method: 'POST' });
  t.equal(outside.status, 400);
  t.equal(
    (await errorBody(outside)).message,
    'Manifest field model.requirementsFile names a file outside the model directory: ../../deps.json',
    'refused when the manifest is read, as every path it names',
  );
  const pip = await fetch(`${server.urls.management}/models?url=pip.mar&initial_workers=0`, { method: 'POST' });
  t.equal(pip.status, 200, 'registered: nothing to install');
  t.ok(
    log.some((l) => l.includes('Model pip: requirements.txt is not a package.json; no dependencies installed')),
    'and said why',
  );
});

// How a worker finds and loads the manifest's handler: a .ts without its compiled .js is compiled
// on load, a plain .js works, a `module:function` entry point is honoured, and a handler that
// throws in initialize fails registration cleanly.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { buildMar, FIXTURES, startTestServer } from './helpers.js';

t.test('a model directory whose handler is only TypeScript is compiled when the worker loads it', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts'), archiveFormat: 'no-archive' });
      rmSync(join(store, 'echo', 'echo_handler.js'));
    },
  });
  const reg = await fetch(`${server.urls.management}/models?url=echo&initial_workers=1`, { method: 'POST' });
  t.equal(reg.status, 200, await reg.text());
  const res = await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'hi', headers: { 'content-type': 'text/plain' } });
  t.match(await res.json(), { params: { body: { kind: 'text', value: 'hi' } } });
});

t.test('a JavaScript handler with a named function entry point', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      const src = join(store, '..', 'upper.js');
      writeFileSync(src, 'export function shout(batch) { return batch === null ? null : batch.map((r) => String(r.body).toUpperCase()); }\n');
      buildMar(store, { modelName: 'upper', version: '1.0', handler: `${src}:shout` });
    },
  });
  t.equal((await fetch(`${server.urls.management}/models?url=upper.mar&initial_workers=1`, { method: 'POST' })).status, 200);
  const res = await fetch(`${server.urls.inference}/predictions/upper`, { method: 'POST', body: 'quiet', headers: { 'content-type': 'text/plain' } });
  t.equal(await res.text(), 'QUIET');
});

t.test('a handler that throws in initialize, or cannot be imported: registration fails with 500, the log says which, the server goes on', async (t) => {
  const log: string[] = [];
  const server = await startTestServer(t, {
    prepare: (store) => {
      const failing = join(store, '..', 'failing.ts');
      writeFileSync(failing, "export default class Failing { initialize(): void { throw new Error('no weights'); } handle(): never[] { return []; } }\n");
      buildMar(store, { modelName: 'failing', version: '1.0', handler: failing });
      const broken = join(store, '..', 'broken.js');
      writeFileSync(broken, "import './not-there.js';\nexport default class Broken {}\n");
      buildMar(store, { modelName: 'broken', version: '1.0', handler: broken });
    },
    serverLog: (line) => log.push(line),
  });
  for (const name of ['failing', 'broken']) {
    const res = await fetch(`${server.urls.management}/models?url=${name}.mar&initial_workers=1&synchronous=true`, { method: 'POST' });
    t.equal(res.status, 500);
    t.same(await res.json(), { code: 500, type: 'InternalServerException', message: `Failed to start workers for model ${name} version: 1.0` });
  }
  t.match(log.join('\n'), /Failed to load model failing: The handler's initialize failed: no weights\n/);
  t.match(log.join('\n'), /Failed to load model broken: Handler broken\.js could not be loaded: .*not-there/);
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, 'still serving');
});

// The log files are read back as bytes, after the server has closed them: one access line per
// answered request, and what a handler prints, in model_log.log.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { FIXTURES, buildMar, startTestServer, waitReady } from './helpers.js';

t.test('access_log.log has a line per request and model_log.log what the handler printed', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    properties: { load_models: 'echo.mar' },
  });
  await waitReady(server.urls.management, 'echo');
  t.equal((await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'print' })).status, 200);
  t.equal((await fetch(`${server.urls.inference}/predictions/missing`, { method: 'POST', body: 'x' })).status, 404);
  await server.close();

  const access = readFileSync(join(server.dir, 'logs', 'access_log.log'), 'utf8').trim().split('\n')
    .filter((l) => l.includes('/predictions/'));
  t.match(access, [
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3} - \/127\.0\.0\.1:\d+ "POST \/predictions\/echo HTTP\/1\.1" 200 \d+$/,
    /"POST \/predictions\/missing HTTP\/1\.1" 404 \d+$/,
  ], 'one line per answered request, in order');
  t.equal(access.length, 2);

  const model = readFileSync(join(server.dir, 'logs', 'model_log.log'), 'utf8');
  t.match(model, /\[INFO \] W-\S+-stdout MODEL_LOG - echo handler was asked to print$/m);
});

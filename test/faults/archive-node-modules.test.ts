// What an archive's node_modules may be: a folder of its own packages (tsserve's are linked beside
// them), or nothing (one link to the packages the server links once, src/archive/link-packages.ts).
// Anything else is the archive's fault: a 400, and nothing of it left in the models' folder.
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { MODELS_ROOT } from '../../dist/src/archive/extract.js';
import { describe, predict, register, serve } from '../echo-model.js';
import { buildMar, FIXTURES, startTestServer, tempDir, waitFor } from '../helpers.js';
import { survived } from './survival.js';

for (const permission of ['false', 'true']) {
  t.test(`an archive whose node_modules is a file is a 400 InvalidModelException, and leaves nothing behind (worker_permission=${permission})`, async (t) => {
    const files = tempDir(t);
    const notAFolder = join(files, 'node_modules');
    writeFileSync(notAFolder, 'not a folder');
    const server = await startTestServer(t, {
      prepare: (store) => {
        buildMar(store, { modelName: 'filed', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts'), extraFiles: notAFolder });
        buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
      },
      // Under worker_permission echo serves with no worker: a worker under Node's permission model
      // refuses a NODE_OPTIONS preload of the test run's (an accounting hook, a coverage tool), and
      // the refusal is the subject here, not echo's answer.
      properties: { load_models: 'echo.mar', worker_permission: permission, default_workers_per_model: permission === 'true' ? '0' : '1' },
    });
    // This process's extractions (named by its pid): other test files extract beside it at the same time.
    const ours = (): string[] =>
      readdirSync(MODELS_ROOT)
        .filter((name) => name.startsWith(`${process.pid}-`))
        .sort();
    const before = ours();
    const res = await fetch(`${server.urls.management}/models?url=filed.mar&initial_workers=1&synchronous=true`, { method: 'POST' });
    t.equal(res.status, 400);
    t.same(await res.json(), { code: 400, type: 'InvalidModelException', message: 'The archive has a node_modules that is not a folder.' });
    t.same(ours(), before, 'its extracted folder is removed');
    if (permission === 'false') {
      const echo = await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'still here' });
      t.equal(echo.status, 200, 'the other model answers');
    }
    await survived(t, server, { models: ['echo'] });
  });
}

// A handler may change its own model directory (without worker_permission, anything). What it
// does to its node_modules stays its own: a folder of links shared by the models, tried for a
// session, let one handler's removed link fail every other model's next worker and registration
// (review-12 F2).
t.test("a handler that removes its own link to tsserve: the other models' next workers and registrations are unharmed", async (t) => {
  const files = tempDir(t);
  const handler = join(files, 'unlinker.js');
  writeFileSync(
    handler,
    "import { rmSync } from 'node:fs';\nexport async function handle(batch) {\n  if (batch === null) return null;\n  rmSync('node_modules/tsserve', { recursive: true, force: true });\n  return batch.map(() => 'unlinked');\n}\n",
  );
  const server = await serve(t, { default_workers_per_model: '1' });
  buildMar(server.store, { modelName: 'unlinker', version: '1.0', handler });
  await register(t, server, 'echo_a', { initial_workers: 1 });
  await register(t, server, 'unlinker', { url: 'unlinker.mar', initial_workers: 1 });
  t.equal(await (await predict(server, 'unlinker', 'x')).text(), 'unlinked', 'the handler removed its link');
  const before = (await describe(server, 'echo_a')).workers[0]!.pid;
  process.kill(before, 'SIGKILL');
  await waitFor(async () => (await describe(server, 'echo_a')).workers.some((w) => w.status === 'READY' && w.pid !== before), 30_000, "echo_a's next worker");
  const answered = [await predict(server, 'echo_a', 'after the kill')];
  await register(t, server, 'echo_b', { initial_workers: 1 });
  answered.push(await predict(server, 'echo_b', 'registered after'));
  t.same(
    answered.map((r) => r.status),
    [200, 200],
    "echo_a's restarted worker and echo_b, registered after, answer",
  );
  await survived(t, server, { models: ['echo_a', 'echo_b', 'unlinker'], sent: 3, answered: 3 });
});

// A `kill -9` of tsserve gives it no moment to end its workers' process groups (workers/worker-host.ts
// endGroup): the workers die all the same (the parent-death signal, or their watch), and what
// their handlers started must end with them, in a worker of its own as in a shared host. The front
// end runs as a child process here, as a user starts it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, FIXTURES, tempDir, waitFor, waitReady, writeUserConfig } from '../helpers.js';
import { alive, startFrontEnd } from './front-end.js';
import { survived } from './survival.js';

/** Has `model`'s handler start a `sleep`; its pid, killed at the test's end whatever happens. */
async function spawnChild(t: Test, inference: string, model: string): Promise<number> {
  const res = await fetch(`${inference}/predictions/${model}`, { method: 'POST', body: 'spawn', signal: AbortSignal.timeout(30_000) });
  t.equal(res.status, 200, `${model}'s handler started a child`);
  const { child } = (await res.json()) as { child: number };
  t.ok(alive(child), `${model}'s child ${child} runs`);
  t.teardown(() => {
    if (alive(child)) process.kill(child, 'SIGKILL');
  });
  return child;
}

t.test("kill -9 of the front end: its handlers' children end with their workers", { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  for (const [name, shared] of [
    ['own', false],
    ['shared', true],
  ] as const) {
    const configFile = join(dir, `${name}.yaml`);
    writeFileSync(configFile, `minWorkers: 1\nmaxWorkers: 1\nsharedWorker: ${shared}\n`);
    buildMar(store, { modelName: name, version: '1.0', handler: join(FIXTURES, 'spawning_handler.ts'), configFile });
  }
  const urls = await writeUserConfig(dir);
  const first = startFrontEnd(t, dir, ['own=own.mar', 'shared=shared.mar']);
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up');
  await waitReady(urls.management, 'own');
  await waitReady(urls.management, 'shared');
  const children = [await spawnChild(t, urls.inference, 'own'), await spawnChild(t, urls.inference, 'shared')];

  first.child.kill('SIGKILL');
  await first.exited;
  await waitFor(() => !children.some(alive), 10_000, 'the children ended').catch(() => undefined);
  t.same(children.filter(alive), [], "no handler's child of the killed front end is alive 10 s later");

  const second = startFrontEnd(t, dir, ['own=own.mar', 'shared=shared.mar']);
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up again');
  await waitReady(urls.management, 'own');
  const server = { urls: { ...urls, grpcInference: '', grpcManagement: '', kserve: undefined, grpcKserve: undefined } };
  await survived(t, server, { models: ['own', 'shared'], serverPid: second.child.pid! });
  second.child.kill('SIGTERM');
  await second.exited;
});

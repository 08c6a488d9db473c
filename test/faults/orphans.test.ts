// Workers die with their front end: after a `kill -9` of tsserve, which gives it no moment to stop
// them, no worker of it is alive 5 s later, also one whose handler keeps its CPU busy (its event
// loop never turns, so it never sees its IPC channel close). The front end runs as a child
// process here, as a user starts it.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { buildMar, FIXTURES, tempDir, waitFor, waitReady, writeUserConfig } from '../helpers.js';
import { alive, startFrontEnd } from './front-end.js';
import { survived } from './survival.js';

/** Clock ticks the process has run in user mode (/proc/<pid>/stat's 14th field). */
function userTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[11]);
}

async function workerPidsOf(management: string): Promise<number[]> {
  const [d] = (await (await fetch(`${management}/models/busy`)).json()) as Array<{ workers: Array<{ pid: number }> }>;
  return d!.workers.map((w) => w.pid);
}

t.test(
  'kill -9 of the front end while its workers spin: none of them is alive 5 s later',
  { skip: process.platform !== 'linux' && 'reads /proc' },
  async (t) => {
    const dir = tempDir(t);
    const store = join(dir, 'model-store');
    mkdirSync(store);
    const configFile = join(dir, 'model-config.yaml');
    writeFileSync(configFile, 'minWorkers: 2\nmaxWorkers: 2\n');
    buildMar(store, { modelName: 'busy', version: '1.0', handler: join(FIXTURES, 'lifetime_handler.ts'), configFile });
    const urls = await writeUserConfig(dir);
    const first = startFrontEnd(t, dir, ['busy=busy.mar']);
    await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up');
    await waitReady(urls.management, 'busy', 2);
    const pids = await workerPidsOf(urls.management);
    t.equal(pids.length, 2, `two workers: ${pids.join(', ')}`);

    // Both workers spin in their handler: their main threads never return to the event loop.
    const spinning = pids.map(() =>
      fetch(`${urls.inference}/predictions/busy`, { method: 'POST', body: 'spin' }).then(
        (r) => r.status,
        () => 'no answer',
      ),
    );
    const ticks = new Map(pids.map((pid) => [pid, userTicks(pid)]));
    await waitFor(() => pids.every((pid) => userTicks(pid) - ticks.get(pid)! >= 20), 15_000, 'both workers busy');
    first.child.kill('SIGKILL');
    await first.exited;
    await Promise.all(spinning);

    await waitFor(() => pids.every((pid) => !alive(pid)), 5_000, 'the workers gone').catch(() => undefined);
    t.same(pids.filter(alive), [], 'no worker of the killed front end is alive 5 s later (or sooner)');

    // The next front end on the same store and ports comes up with the model, and its workers are its own.
    const second = startFrontEnd(t, dir, ['busy=busy.mar']);
    await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up again');
    await waitReady(urls.management, 'busy', 2);
    const server = { urls: { ...urls, grpcInference: '', grpcManagement: '', kserve: undefined, grpcKserve: undefined } };
    await survived(t, server, { models: ['busy'], serverPid: second.child.pid! });
    second.child.kill('SIGTERM');
    await second.exited;
  },
);

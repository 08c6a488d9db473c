// Describe lists the workers a model has, each as it is: a worker scaled down or unregistered is
// gone from the list; a worker whose process died stays listed, UNLOADING as TorchServe's, while
// it waits for its restart, or for good once its recovery window is over, but with no pid (-1)
// and no memory: the pid of a process that ended may name another process by then. A scale-down
// stops such a worker before one that serves.
import { join } from 'node:path';
import t from 'tap';
import { describe, predict, register } from '../echo-model.js';
import { buildBreakingMar, errorBody, startTestServer, tempDir, waitFor } from '../helpers.js';
import { survived, workerPids } from './survival.js';

t.test('a worker whose process died, past its recovery window: UNLOADING, pid -1, memory 0; scaled down first, then not listed', async (t) => {
  const log: string[] = [];
  const marker = join(tempDir(t), 'broken');
  // A window of 1 s: the dead worker's one restart, 1 s later, fails to load, and it stays stopped.
  const server = await startTestServer(t, {
    prepare: (store) => buildBreakingMar(store, marker, 'maxRetryTimeoutInSec: 1\n'),
    serverLog: (line) => log.push(line),
    level: 'info',
  });
  await register(t, server, 'breaking', { url: 'breaking.mar', initial_workers: 2 });
  const died = await predict(server, 'breaking', 'break');
  t.same(await errorBody(died), { code: 500, type: 'InternalServerException', message: 'Worker died.' }, 'a worker dies');
  await waitFor(() => log.some((l) => /Worker \d+ stays stopped: the recovery window is over/.test(l)), 60_000, 'the worker stays stopped');

  const after = (await describe(server, 'breaking')).workers as Array<{ status: string; pid: number; memoryUsage: number }>;
  t.same(after.map((w) => w.status).sort(), ['READY', 'UNLOADING'], 'the stopped worker is listed UNLOADING beside the one that serves');
  const stopped = after.find((w) => w.status === 'UNLOADING')!;
  t.same([stopped.pid, stopped.memoryUsage], [-1, 0], 'with no pid and no memory');
  const serving = after.find((w) => w.status === 'READY')!;
  t.ok(workerPids(process.pid).includes(serving.pid), "the serving worker's pid is a live worker process");
  t.equal((await predict(server, 'breaking', 'hello')).status, 200, 'the serving worker answers');

  const scaled = await fetch(`${server.urls.management}/models/breaking?min_worker=1&synchronous=true`, { method: 'PUT' });
  t.equal(scaled.status, 200, 'scaled to one');
  t.same(
    (await describe(server, 'breaking')).workers.map((w) => [w.status, w.pid]),
    [['READY', serving.pid]],
    'the stopped worker went, the serving one stays, and only it is listed',
  );
  await survived(t, server, { models: ['breaking'], sent: 2, answered: 2 });

  t.equal((await fetch(`${server.urls.management}/models/breaking`, { method: 'DELETE' })).status, 200, 'unregistered');
  t.equal((await fetch(`${server.urls.management}/models/breaking`)).status, 404, 'and not described');
  t.same(workerPids(process.pid), [], 'its worker processes are gone');
});

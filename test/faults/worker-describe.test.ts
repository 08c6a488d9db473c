// Describe lists the workers a model has, each as it is: a worker scaled down or unregistered is
// gone from the list; a worker whose process died stays listed, UNLOADING as TorchServe's, until
// its restart, or for good once its recovery window is over, but with no pid (-1) and no memory:
// the pid of a process that ended may name another process by then.
import t from 'tap';
import { describe, predict, register, serve } from '../echo-model.js';
import { errorBody, waitReady } from '../helpers.js';
import { survived, workerPids } from './survival.js';

t.test('a worker whose process died and is not restarted: UNLOADING, pid -1, memory 0; scaled down or unregistered: not listed', async (t) => {
  // No recovery window: a worker that dies stays stopped, and listed so.
  const server = await serve(t, {}, 'maxRetryTimeoutInSec: 0\n');
  await register(t, server, 'fragile', { initial_workers: 2 });
  await waitReady(server.urls.management, 'fragile', 2);
  const died = await predict(server, 'fragile', 'exit');
  t.same(await errorBody(died), { code: 500, type: 'InternalServerException', message: 'Worker died.' }, 'a worker dies');
  const after = (await describe(server, 'fragile')).workers as Array<{ status: string; pid: number; memoryUsage: number }>;
  const live = workerPids(process.pid);
  t.same(after.map((w) => w.status).sort(), ['READY', 'UNLOADING'], 'the dead worker is listed UNLOADING beside the one that serves');
  const dead = after.find((w) => w.status === 'UNLOADING')!;
  t.same([dead.pid, dead.memoryUsage], [-1, 0], 'with no pid and no memory');
  const ready = after.find((w) => w.status === 'READY')!;
  t.ok(live.includes(ready.pid), "the serving worker's pid is a live worker process");
  t.equal((await predict(server, 'fragile', 'hello')).status, 200, 'the other worker answers');

  // Scaled down to one: the stopped worker goes first, and is not listed.
  const scaled = await fetch(`${server.urls.management}/models/fragile?min_worker=1&synchronous=true`, { method: 'PUT' });
  t.equal(scaled.status, 200, 'scaled to one');
  const one = (await describe(server, 'fragile')).workers;
  t.same(
    one.map((w) => [w.status, live.includes(w.pid)]),
    [['READY', true]],
    'only the serving worker is listed',
  );
  await survived(t, server, { models: ['fragile'], sent: 2, answered: 2 });

  const gone = await fetch(`${server.urls.management}/models/fragile`, { method: 'DELETE' });
  t.equal(gone.status, 200, 'unregistered');
  t.equal((await fetch(`${server.urls.management}/models/fragile`)).status, 404, 'and not described');
  t.same(workerPids(process.pid), [], 'its worker processes are gone');
});

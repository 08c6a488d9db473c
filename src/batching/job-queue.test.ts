import { getEventListeners } from 'node:events';
import t from 'tap';
import { tsError, type TsError } from '../errors.js';
import { Job, type JobResponse } from './job.js';
import { JobQueue } from './job-queue.js';
import { movedClock } from '../../test/unit/moved-clock.js';

function job(id: string, headers: Record<string, string> = {}): Job {
  return new Job(
    { id, headers, params: [] },
    {
      intermediate: () => {},
      respond: (_r: JobResponse) => {},
      fail: (_e: TsError) => {},
    },
  );
}

const ids = (jobs: Job[]): string[] => jobs.map((j) => j.id);

t.test('batch size 1 takes one job at once', async (t) => {
  const q = new JobQueue(10);
  q.enqueue(job('a'));
  q.enqueue(job('b'));
  t.same(ids(await q.poll(1, 100)), ['a']);
  t.same(ids(await q.poll(1, 100)), ['b']);
});

t.test('a full batch goes at once; a short one when maxBatchDelay has passed since its first job, not before', async (t) => {
  const clock = movedClock();
  const q = new JobQueue(10, clock.start);
  for (const id of ['a', 'b', 'c']) q.enqueue(job(id));
  t.same(ids(await q.poll(3, 10_000)), ['a', 'b', 'c'], 'full: no waiting');
  let left: Job[] | undefined;
  void q.poll(8, 50).then((jobs) => {
    left = jobs;
  });
  q.enqueue(job('d'));
  await clock.advance(10);
  q.enqueue(job('e'));
  await clock.advance(39);
  t.equal(left, undefined, '49 ms after its first job the batch still waits');
  await clock.advance(1);
  t.same(ids(left ?? []), ['d', 'e'], 'at 50 ms it leaves, with the job that arrived within the delay');
});

t.test("with Node's timers, a short batch leaves after its delay", async (t) => {
  const q = new JobQueue(10);
  const pending = q.poll(8, 20);
  q.enqueue(job('d'));
  t.same(ids(await pending), ['d']);
});

t.test('waiting workers take batches in turn; a full queue refuses', async (t) => {
  const q = new JobQueue(2);
  const first = q.poll(1, 0);
  const second = q.poll(1, 0);
  t.ok(q.enqueue(job('a')));
  t.ok(q.enqueue(job('b')));
  t.same(ids(await first), ['a']);
  t.same(ids(await second), ['b']);
  t.ok(q.enqueue(job('c')));
  t.ok(q.enqueue(job('d')));
  t.notOk(q.enqueue(job('e')), 'capacity reached');
  t.equal(q.remainingCapacity, 0);
});

t.test('an aborted poll hands its jobs back, in order, to the front', async (t) => {
  const q = new JobQueue(10);
  const ac = new AbortController();
  const held = q.poll(4, 10_000, ac.signal);
  q.enqueue(job('a'));
  q.enqueue(job('b'));
  q.enqueue(job('c'));
  ac.abort();
  t.same(ids(await held), []);
  t.same(ids(await q.poll(4, 0)), ['a', 'b', 'c']);
});

t.test('settled jobs are skipped', async (t) => {
  const q = new JobQueue(10);
  const gone = job('gone');
  q.enqueue(gone);
  q.enqueue(job('b'));
  gone.fail(tsError('TSS_ERR_WORKER_DIED'));
  t.same(ids(await q.poll(2, 0)), ['b']);
});

t.test('a worker polling with one signal for its whole life leaves no listener behind per poll', async (t) => {
  const q = new JobQueue(10);
  const stop = new AbortController();
  for (let i = 0; i < 50; i++) {
    q.enqueue(job(String(i)));
    await q.poll(1, 0, stop.signal);
  }
  t.equal(getEventListeners(stop.signal, 'abort').length, 0, 'the listener of a delivered poll is removed');
  const waiting = q.poll(1, 0, stop.signal);
  t.equal(getEventListeners(stop.signal, 'abort').length, 1);
  stop.abort();
  t.same(await waiting, [], 'an abort still ends a waiting poll');
});

t.test('a busy worker takes a next batch only when it is full and no idle worker waits', async (t) => {
  const q = new JobQueue(20);
  for (const id of ['a', 'b', 'c']) q.enqueue(job(id));
  t.same(ids(q.takeFullBatch(4, 0)), [], 'never a partial batch');
  const idle = q.poll(8, 10_000);
  q.enqueue(job('d'));
  t.same(ids(q.takeFullBatch(2, 0)), [], 'an idle worker waiting comes first');
  for (const id of ['e', 'f', 'g', 'h']) q.enqueue(job(id));
  t.same(ids(await idle), ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'], 'the idle worker got every job');
  for (const id of ['i', 'j', 'k']) q.enqueue(job(id));
  const ahead = q.takeFullBatch(2, 0);
  t.same(ids(ahead), ['i', 'j'], 'a full batch, in order');
  t.equal(q.size, 3, 'a batch taken ahead still waits, in the worker: it counts until answered');
  for (const j of ahead) j.fail(tsError('TSS_ERR_WORKER_DIED'));
  await Promise.all(ahead.map((j) => j.done));
  t.equal(q.size, 1);
});

t.test('no job is taken ahead whose queue deadline is nearer than the time it would wait there', async (t) => {
  const q = new JobQueue(10);
  const soon = job('soon');
  // Its deadline 60 s away: the two calls below are on the machine's clock, and a loaded one
  // (npm test at load 30, 15:40 on 2026-12-07) let 50 ms pass between them.
  soon.deadline = performance.now() + 60_000;
  q.enqueue(soon);
  q.enqueue(job('b'));
  t.same(ids(q.takeFullBatch(2, 120_000)), [], 'it would be answered at its deadline from the queue, and never run');
  t.same(ids(q.takeFullBatch(2, 10)), ['soon', 'b'], 'with time to spare it goes');
});

t.test('jobs taken ahead have left the queue: they leave room for others but still count as pending; put back, they count once', async (t) => {
  const q = new JobQueue(4);
  for (const id of ['a', 'b', 'c', 'd']) t.ok(q.enqueue(job(id)));
  t.notOk(q.enqueue(job('x')), 'full: four queued');
  const ahead = q.takeFullBatch(2, 0);
  t.equal(q.remainingCapacity, 2, "two in a worker's pipe: room for two more");
  t.ok(q.enqueue(job('e')));
  t.ok(q.enqueue(job('f')));
  t.notOk(q.enqueue(job('g')), 'full again: four queued');
  t.equal(q.size, 6, 'pending: four queued and two ahead');
  q.requeue(ahead);
  t.equal(q.size, 6, 'the worker died before them: back in the queue, counted once');
  t.same(ids(await q.poll(8, 0)), ['a', 'b', 'c', 'd', 'e', 'f']);
});

t.test('a busy worker learns of each new job (nextEnqueue), to look for a full batch again', async (t) => {
  const q = new JobQueue(10);
  const arrival = q.nextEnqueue();
  t.equal(q.nextEnqueue(), arrival, 'every busy worker waits on the same arrival');
  let arrived = false;
  void arrival.then(() => (arrived = true));
  await Promise.resolve();
  t.notOk(arrived);
  q.enqueue(job('a'));
  await arrival;
  t.ok(arrived, 'settled by the enqueue');
  t.not(q.nextEnqueue(), arrival, 'the next wait is for the next job');
});

t.test('a describe or explain job leaves in a batch of its own, and sends the batch being formed on its way', async (t) => {
  const q = new JobQueue(10);
  const forming = q.poll(8, 10_000);
  q.enqueue(job('a'));
  q.enqueue(job('describe', { describe: 'True' }));
  q.enqueue(job('b'));
  t.same(ids(await forming), ['a'], 'the batch so far leaves without waiting for its delay');
  t.same(ids(await q.poll(8, 10_000)), ['describe'], 'alone, though more jobs are queued');
  t.same(ids(await q.poll(8, 0)), ['b']);
  for (const id of ['c', 'd']) q.enqueue(job(id));
  q.enqueue(job('alone', { explain: 'True' }));
  t.same(ids(q.takeFullBatch(3, 0)), [], 'no early full batch holds it');
  t.same(ids(q.takeFullBatch(2, 0)), ['c', 'd'], 'one before it may go');
});

t.test("a chosen wait under a timer's 1 ms lasts to the end of the event loop's turn: what that turn reads joins, and no timer holds the batch", async (t) => {
  const q = new JobQueue(10);
  const batch = q.poll(8, () => 0.5);
  q.enqueue(job('a'));
  q.enqueue(job('b'));
  // A setImmediate queued after the wait began runs after it: one turn, not a timer's millisecond.
  const turn = new Promise<string>((resolve) => setImmediate(() => resolve('turn ended')));
  const first = await Promise.race([batch.then(ids), turn]);
  t.same(first, ['a', 'b'], 'both, sent at the end of the turn');
});

t.test("the load is the clients' jobs: the server's own (quiet, the front end's warm-up) are left out, queued or held ahead", async (t) => {
  const q = new JobQueue(10);
  const quiet = (id: string): Job => new Job({ id, headers: {}, params: [] }, { intermediate: () => {}, respond: () => {}, fail: () => {} }, true);
  const own = [quiet('w1'), quiet('w2'), quiet('w3')];
  for (const j of own) q.enqueue(j);
  q.enqueue(job('client'));
  t.same([q.size, q.load], [4, 1], "the warm-up's wait, not a client's");
  t.same(ids(q.takeFullBatch(2, 0)), ['w1', 'w2'], 'taken ahead by a busy worker');
  t.same([q.size, q.load], [4, 1], 'held ahead, still not load');
  for (const j of own) j.respond({ status: 200, phrase: 'OK', headers: {}, body: new Uint8Array() });
  await Promise.all(own.map((j) => j.done));
  t.same(ids(await q.poll(8, 0)), ['client']);
  q.enqueue(job('next'));
  t.same([q.size, q.load], [1, 1], 'none of its own left: the load is the queue');
});

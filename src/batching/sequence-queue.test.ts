// A stateful model's queue against a clock of the test's: idle and age limits are checked at the
// millisecond, without waiting for them.
import t, { type Test } from 'tap';
import { Job } from './job.js';
import { SequenceQueue } from './sequence-queue.js';

const HEADERS = { id: 'ts_request_sequence_id', start: 'ts_request_sequence_start', end: 'ts_request_sequence_end' };

function testClock(): { now: () => number; advance: (ms: number) => void } {
  let ms = 1_000_000;
  return {
    now: () => ms,
    advance: (by) => {
      ms += by;
    },
  };
}

let nextId = 0;
function job(headers: Record<string, string> = {}): Job {
  return new Job({ id: `r${nextId++}`, headers: { ...headers }, params: [] }, { intermediate: () => {}, respond: () => {}, fail: () => {} });
}

function queue(limits: { idle?: number; age?: number }, clock: ReturnType<typeof testClock>): SequenceQueue {
  const settings = {
    maxNumSequence: 1,
    maxSequenceJobQueueSize: 4,
    sequenceMaxIdleMSec: limits.idle ?? 0,
    sequenceTimeoutMSec: limits.age ?? 0,
    headers: HEADERS,
  };
  return new SequenceQueue(settings, clock.now);
}

/** Offers a job of the sequence `id` (a new sequence without one) and lets a worker take it. */
async function sendAndTake(t: Test, q: SequenceQueue, id?: string): Promise<string> {
  const j = job(id ? { [HEADERS.id]: id } : {});
  t.ok(q.enqueue(j), id ? `${id} takes a request` : 'a new sequence opens');
  t.same(
    (await q.poll(1, 0)).map((taken) => taken.id),
    [j.id],
  );
  return j.responseHeaders[HEADERS.id]!;
}

t.test('a sequence idle past sequenceMaxIdleMSec is closed, and its place is free again', async (t) => {
  const clock = testClock();
  const q = queue({ idle: 500 }, clock);
  const id = await sendAndTake(t, q);
  t.notOk(q.enqueue(job()), 'maxNumSequence is 1: no second sequence');
  clock.advance(500);
  await sendAndTake(t, q, id);
  clock.advance(501);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'idle 501 ms: closed');
  await sendAndTake(t, q);
});

t.test('a sequence older than sequenceTimeoutMSec takes no more requests, however busy', async (t) => {
  const clock = testClock();
  const q = queue({ age: 1000 }, clock);
  const id = await sendAndTake(t, q);
  for (let i = 0; i < 4; i++) {
    clock.advance(250);
    await sendAndTake(t, q, id);
  }
  clock.advance(1);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'at 1001 ms old it is over, though it was never idle');
  await sendAndTake(t, q);
});

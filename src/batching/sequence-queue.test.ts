// A stateful model's queue against a clock of the test's: idle and age limits are checked at the
// millisecond, without waiting for them.
import t, { type Test } from 'tap';
import { tsError } from '../errors.js';
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

function queue(limits: { idle?: number; age?: number; sequences?: number }, clock: ReturnType<typeof testClock>): SequenceQueue {
  const settings = {
    maxNumSequence: limits.sequences ?? 1,
    maxSequenceJobQueueSize: 4,
    sequenceMaxIdleMSec: limits.idle ?? 0,
    sequenceTimeoutMSec: limits.age ?? 0,
    headers: HEADERS,
  };
  return new SequenceQueue(settings, clock.now);
}

/** Offers a job of the sequence `id` (a new sequence without one; `end`: its last) and lets a worker take it; answers the job taken. */
async function offerAndTake(t: Test, q: SequenceQueue, id?: string, end = false): Promise<Job> {
  const j = job({ ...(id ? { [HEADERS.id]: id } : {}), ...(end ? { [HEADERS.end]: 'true' } : {}) });
  t.ok(q.enqueue(j), id ? `${id} takes a request` : 'a new sequence opens');
  t.same(
    (await q.poll(1, 0)).map((taken) => taken.id),
    [j.id],
  );
  return j;
}

/** offerAndTake, answering the sequence's id. */
async function sendAndTake(t: Test, q: SequenceQueue, id?: string): Promise<string> {
  return (await offerAndTake(t, q, id)).responseHeaders[HEADERS.id]!;
}

const notRun = (): ReturnType<typeof tsError> => tsError('TSS_ERR_PREDICTION_NOT_RUN_AGAIN', "for other requests' inputs", 'a stateful model', '');

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

// Review-16 F4: a request answered "not run, send it again" had spent its sequence's start (the
// request sent again reached the handler without it) or, an end, closed its sequence (the request
// sent again was refused, and the handler never saw the end).
t.test('a request not run gives its start back: the next one taken of its sequence is its start', async (t) => {
  const q = queue({}, testClock());
  const opener = await offerAndTake(t, q);
  t.equal(opener.request.headers[HEADERS.start], 'true', 'the first request taken is the start');
  const id = opener.responseHeaders[HEADERS.id]!;
  opener.fail(notRun());
  t.equal((await offerAndTake(t, q, id)).request.headers[HEADERS.start], 'true', 'sent again, it is the start');
  t.equal((await offerAndTake(t, q, id)).request.headers[HEADERS.start], undefined, 'the one after is not');
});

t.test('a request run and failed keeps its start spent', async (t) => {
  const q = queue({}, testClock());
  const opener = await offerAndTake(t, q);
  opener.fail(tsError('TSS_ERR_PREDICTION_FAILED'));
  t.equal((await offerAndTake(t, q, opener.responseHeaders[HEADERS.id])).request.headers[HEADERS.start], undefined);
});

t.test('an end not run opens its sequence again, for the end sent again', async (t) => {
  const q = queue({}, testClock());
  const id = await sendAndTake(t, q);
  const end = await offerAndTake(t, q, id, true);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'taken, the end closed the sequence');
  end.fail(notRun());
  (await offerAndTake(t, q, id, true)).respond({ status: 200, phrase: 'OK', headers: {}, body: new Uint8Array(0) });
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'the end run, the sequence is closed');
  await sendAndTake(t, q);
});

t.test('an end that waited past its deadline in the queue opens its sequence again', async (t) => {
  const q = queue({}, testClock());
  const id = await sendAndTake(t, q);
  const end = job({ [HEADERS.id]: id, [HEADERS.end]: 'true' });
  t.ok(q.enqueue(end));
  t.ok(q.remove(end), 'its wait is over (the model removes it, then fails it)');
  end.fail(tsError('TSS_ERR_CLIENT_TIMEOUT', '100', 'm'));
  await offerAndTake(t, q, id, true);
});

t.test('an end not run past sequenceTimeoutMSec leaves its sequence closed', async (t) => {
  const clock = testClock();
  const q = queue({ age: 1000 }, clock);
  const id = await sendAndTake(t, q);
  const end = await offerAndTake(t, q, id, true);
  clock.advance(1001);
  end.fail(notRun());
  t.notOk(q.enqueue(job({ [HEADERS.id]: id, [HEADERS.end]: 'true' })), 'too old to take the end again');
  await sendAndTake(t, q);
});

t.test('a sequence opened and left unrun lends its start to the next request taken, not to one of another sequence', async (t) => {
  const q = queue({ sequences: 2 }, testClock());
  const a = job();
  t.ok(q.enqueue(a));
  const id = a.responseHeaders[HEADERS.id]!;
  t.ok(q.remove(a));
  a.fail(tsError('TSS_ERR_CLIENT_TIMEOUT', '100', 'm'));
  const other = await offerAndTake(t, q);
  t.equal(other.request.headers[HEADERS.start], 'true', "another sequence's opener is its own start");
  t.equal((await offerAndTake(t, q, id)).request.headers[HEADERS.start], 'true', 'the first request taken of the sequence is its start');
});

// A stateful model's queue against a clock of the test's: idle and age limits are checked at the
// millisecond, without waiting for them.
import t, { type Test } from 'tap';
import { tsError } from '../errors.js';
import { Job } from './job.js';
import { END_AGAIN_MS, SequenceQueue } from './sequence-queue.js';

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

/** Offers a job of the sequence `id` (a new sequence without one; `end`: its last) and lets a worker take it; the job, taken and not yet answered. */
async function take(
  t: Test,
  q: SequenceQueue,
  id?: string,
  end = false,
  { headers = {}, owner }: { headers?: Record<string, string>; owner?: object } = {},
): Promise<Job> {
  const j = job({ ...headers, ...(id ? { [HEADERS.id]: id } : {}), ...(end ? { [HEADERS.end]: 'true' } : {}) });
  t.ok(q.enqueue(j), id ? `${id} takes a request` : 'a new sequence opens');
  t.same(
    (await q.poll(1, 0, undefined, owner)).map((taken) => taken.id),
    [j.id],
  );
  return j;
}

const OK = { status: 200, phrase: 'OK', headers: {}, body: new Uint8Array(0) };

/** A request of the sequence `id` (a new sequence without one) taken and answered; the sequence's id. */
async function run(t: Test, q: SequenceQueue, id?: string, end = false): Promise<string> {
  const j = await take(t, q, id, end);
  j.respond(OK);
  return j.responseHeaders[HEADERS.id]!;
}

const notRun = (): ReturnType<typeof tsError> => tsError('TSS_ERR_PREDICTION_NOT_RUN_AGAIN', "for other requests' inputs", 'a stateful model', '');

t.test('a sequence idle past sequenceMaxIdleMSec is closed, and its place is free again', async (t) => {
  const clock = testClock();
  const q = queue({ idle: 500 }, clock);
  const id = await run(t, q);
  t.notOk(q.enqueue(job()), 'maxNumSequence is 1: no second sequence');
  clock.advance(500);
  await run(t, q, id);
  clock.advance(501);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'idle 501 ms: closed');
  await run(t, q);
});

t.test('a sequence older than sequenceTimeoutMSec takes no more requests, however busy', async (t) => {
  const clock = testClock();
  const q = queue({ age: 1000 }, clock);
  const id = await run(t, q);
  for (let i = 0; i < 4; i++) {
    clock.advance(250);
    await run(t, q, id);
  }
  clock.advance(1);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'at 1001 ms old it is over, though it was never idle');
  await run(t, q);
});

// Review-16 F4 and review-17 F3-F7: a request answered "not run, send it again" is sent again as
// it was, and no sequence holds its place for good meanwhile.
t.test('an opener not run closes its sequence and names none: sent again as it was, it opens one anew', async (t) => {
  const q = queue({}, testClock());
  const opener = await take(t, q);
  t.equal(opener.request.headers[HEADERS.start], 'true', 'the first request taken is the start');
  const id = opener.responseHeaders[HEADERS.id]!;
  opener.fail(notRun());
  t.same(opener.responseHeaders, {}, 'its answer names no sequence: there is none to continue');
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'its sequence is closed');
  // Before, kept for the client to send it again with the id, it held the only place (maxNumSequence 1) when the client sent it without.
  const again = await take(t, q);
  t.equal(again.request.headers[HEADERS.start], 'true', 'sent again, it opens a sequence, and is its start');
});

t.test('an opener that waited past its deadline in the queue closes its sequence too', async (t) => {
  const q = queue({}, testClock());
  const opener = job();
  t.ok(q.enqueue(opener));
  t.ok(q.remove(opener), 'its wait is over (the model removes it, then fails it)');
  opener.fail(tsError('TSS_ERR_CLIENT_TIMEOUT', '100', 'm'));
  t.same(opener.responseHeaders, {});
  t.equal((await take(t, q)).request.headers[HEADERS.start], 'true', 'the place is free: a new sequence opens, its opener its start');
});

t.test('a sequence whose worker is gone starts over: its next request is its start, and again if that one is not run (review-17 F13)', async (t) => {
  const q = queue({}, testClock());
  const worker = {};
  const first = await take(t, q, undefined, false, { owner: worker });
  first.respond(OK);
  const id = first.responseHeaders[HEADERS.id]!;
  q.release(worker);
  const moved = await take(t, q, id);
  t.equal(moved.request.headers[HEADERS.start], 'true', 'on another worker, it starts over');
  moved.fail(notRun());
  t.equal(moved.responseHeaders[HEADERS.id], id, 'a sequence that ran stays open, and its answer names it');
  const again = await take(t, q, id);
  t.equal(again.request.headers[HEADERS.start], 'true', 'the start not run goes to the next request');
  again.respond(OK);
  t.equal((await take(t, q, id)).request.headers[HEADERS.start], undefined, 'and no further');
});

t.test('a start the client sent is not given back when its request is not run (review-17 F7)', async (t) => {
  const q = queue({}, testClock());
  const id = await run(t, q);
  (await take(t, q, id, false, { headers: { [HEADERS.start]: 'true' } })).fail(notRun());
  t.equal((await take(t, q, id)).request.headers[HEADERS.start], undefined);
});

t.test('a request run and failed keeps its start spent', async (t) => {
  const q = queue({}, testClock());
  const opener = await take(t, q);
  opener.fail(tsError('TSS_ERR_PREDICTION_FAILED'));
  t.equal((await take(t, q, opener.responseHeaders[HEADERS.id])).request.headers[HEADERS.start], undefined);
});

t.test('an end not run opens its sequence again for END_AGAIN_MS, for the end sent again', async (t) => {
  const clock = testClock();
  const q = queue({}, clock);
  const id = await run(t, q);
  const end = await take(t, q, id, true);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'taken, the end closed the sequence');
  end.fail(notRun());
  t.equal(end.responseHeaders[HEADERS.id], id, 'its answer names the sequence');
  await run(t, q, id, true);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'the end run, the sequence is closed');
  await run(t, q);
});

t.test('an end not run and not sent again: its sequence closes after END_AGAIN_MS, with sequenceMaxIdleMSec 0 too', async (t) => {
  const clock = testClock();
  const q = queue({}, clock);
  const id = await run(t, q);
  (await take(t, q, id, true)).fail(notRun());
  clock.advance(END_AGAIN_MS);
  t.notOk(q.enqueue(job()), 'still open: no second sequence (maxNumSequence 1)');
  clock.advance(1);
  // Before, reopened for good, it held the only place (review-17 F3).
  await run(t, q);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'it was closed');
});

t.test('an end that waited past its deadline in the queue opens its sequence again', async (t) => {
  const q = queue({}, testClock());
  const id = await run(t, q);
  const end = job({ [HEADERS.id]: id, [HEADERS.end]: 'true' });
  t.ok(q.enqueue(end));
  t.ok(q.remove(end), 'its wait is over (the model removes it, then fails it)');
  end.fail(tsError('TSS_ERR_CLIENT_TIMEOUT', '100', 'm'));
  await run(t, q, id, true);
});

t.test('an end not run past sequenceTimeoutMSec leaves its sequence closed', async (t) => {
  const clock = testClock();
  const q = queue({ age: 1000 }, clock);
  const id = await run(t, q);
  const end = await take(t, q, id, true);
  clock.advance(1001);
  end.fail(notRun());
  t.notOk(q.enqueue(job({ [HEADERS.id]: id, [HEADERS.end]: 'true' })), 'too old to take the end again');
  await run(t, q);
});

t.test('a sequence is idle from its last answer: a request that runs longer than sequenceMaxIdleMSec does not close it (review-17 F6)', async (t) => {
  const clock = testClock();
  const q = queue({ idle: 500 }, clock);
  const id = await run(t, q);
  const long = await take(t, q, id);
  clock.advance(1500);
  t.notOk(q.enqueue(job()), 'running, it is not idle: no second sequence');
  long.respond(OK);
  clock.advance(500);
  await run(t, q, id);
  clock.advance(501);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'idle 501 ms after its answer: closed');
});

t.test("a request answered while its batch forms leaves room there for its sequence's next (review-17 F5)", async (t) => {
  const q = queue({ sequences: 2 }, testClock());
  const id = await run(t, q);
  const waiting = job({ [HEADERS.id]: id });
  t.ok(q.enqueue(waiting));
  const batch = q.poll(2, 60_000);
  t.notOk(q.remove(waiting), 'taken into the forming batch, it is no longer queued');
  waiting.fail(tsError('TSS_ERR_CLIENT_TIMEOUT', '100', 'm'));
  const again = job({ [HEADERS.id]: id });
  t.ok(q.enqueue(again), 'sent again');
  // Before, the batch's answered request kept its sequence's place there: the one sent again waited for the next batch.
  const taken = await Promise.race([batch, new Promise<undefined>((resolve) => setImmediate(() => resolve(undefined)))]);
  t.same(
    taken?.map((j) => j.id),
    [waiting.id, again.id],
    'it joins the same batch (the pool sends only the unanswered one)',
  );
});

t.test("a sequence whose opener's client went away before its answer is closed: no client knows it (review-17 F4)", async (t) => {
  const q = queue({}, testClock());
  const opener = await take(t, q);
  const id = opener.responseHeaders[HEADERS.id]!;
  opener.clientGone = () => true;
  opener.respond(OK);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'closed');
  // Before, kept, it held the only place (maxNumSequence 1) for good.
  await run(t, q);
});

t.test('a sequence named to its client stays open when a later request is abandoned', async (t) => {
  const q = queue({}, testClock());
  const id = await run(t, q);
  const later = await take(t, q, id);
  later.clientGone = () => true;
  later.respond(OK);
  await run(t, q, id);
});

t.test('a streamed answer names its sequence with its first part: a client gone before the last keeps it (review-18 F1)', async (t) => {
  const q = queue({}, testClock());
  const opener = await take(t, q);
  const id = opener.responseHeaders[HEADERS.id]!;
  let gone = false;
  opener.clientGone = () => gone;
  opener.intermediate({ status: 200, phrase: 'OK', headers: {}, body: new Uint8Array(1) });
  gone = true;
  opener.respond(OK);
  await run(t, q, id);
});

t.test("an end holds its sequence's place until it is answered (review-18 F3)", async (t) => {
  const clock = testClock();
  const q = queue({}, clock);
  const id = await run(t, q);
  const end = await take(t, q, id, true);
  t.notOk(q.enqueue(job({ [HEADERS.id]: id })), 'the sequence takes no more');
  t.notOk(q.enqueue(job()), 'and its place is held (maxNumSequence 1)');
  end.fail(notRun());
  t.notOk(q.enqueue(job()), 'given back, the end holds it still');
  await run(t, q, id, true);
  await run(t, q);
});

// Adaptive batching's decision (issue 34): the batch size and the wait chosen from a fit of
// measured batch times, on a clock the test moves and batch times the test makes up. A fixed
// maxBatchDelay's clock, unchanged, is job-queue.test.ts's; the keys' precedence model-config.test.ts's.
import t from 'tap';
import { AdaptiveBatching, ArrivalGaps, ExecutionFit, THIS_TURN_MS } from './adaptive.js';
import { Job } from './job.js';
import { JobQueue } from './job-queue.js';
import { movedClock } from '../../test/unit/moved-clock.js';

/** A job that arrived at `arrivedAt` on the test's clock. */
function job(id: string, arrivedAt = 0): Job {
  const j = new Job({ id, headers: {}, params: [] }, { intermediate: () => {}, respond: () => {}, fail: () => {} });
  Object.defineProperty(j, 'arrivedAt', { value: arrivedAt });
  return j;
}

/** Batches of sizes 1..8 that each took fixedMs + perItemMs × size: the fake execution-time source. */
function measured(batching: AdaptiveBatching, fixedMs: number, perItemMs: number): void {
  for (let round = 0; round < 3; round++) for (let n = 1; n <= 8; n++) batching.ran(n, fixedMs + perItemMs * n);
}

/** Arrivals every `gapMs` on `clock` (moving it), `count` of them. */
async function arrivals(batching: AdaptiveBatching, clock: ReturnType<typeof movedClock>, gapMs: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await clock.advance(gapMs);
    batching.arrived();
  }
}

/** `times` batches of `size` answered `everyMs` apart on `clock`, each taking `ms`, and their clients back 1 ms after each answer. */
async function answeredAndBack(
  batching: AdaptiveBatching,
  clock: ReturnType<typeof movedClock>,
  { everyMs, size, ms, times }: { everyMs: number; size: number; ms: number; times: number },
): Promise<void> {
  for (let i = 0; i < times; i++) {
    await clock.advance(everyMs);
    batching.ran(size, ms);
    await clock.advance(1);
    for (let k = 0; k < size; k++) batching.arrived();
  }
}

const LIMITS = { ceiling: 8, latencyTargetMs: 100, maxWaitMs: undefined };

t.test('the fit finds the fixed and the per-request time of a batch; one size alone is read as no batching gain', async (t) => {
  const fit = new ExecutionFit();
  for (const n of [1, 2, 4, 8, 3]) fit.add(n, 2 + 0.5 * n);
  const line = fit.line()!;
  t.ok(Math.abs(line.fixedMs - 2) < 1e-6 && Math.abs(line.perItemMs - 0.5) < 1e-6, `2 + 0.5 n, got ${JSON.stringify(line)}`);
  const single = new ExecutionFit();
  single.add(1, 3);
  single.add(1, 5);
  const through = single.line()!;
  t.equal(through.fixedMs, 0, 'through the origin');
  t.ok(Math.abs(through.perItemMs - 3.1) < 1e-9, `the floor, risen a twentieth toward the slower batch: ${through.perItemMs}`);
  t.equal(new ExecutionFit().line(), undefined, 'nothing before the first batch');
});

t.test('the fit reads through preemption: a batch made slower now and then does not raise it', async (t) => {
  const fit = new ExecutionFit();
  for (let i = 0; i < 40; i++) for (const n of [1, 2, 4, 8]) fit.add(n, 0.1 + 0.5 * n + (i % 3 === 0 ? 6 : 0));
  const line = fit.line()!;
  t.ok(line.fixedMs < 0.5 && Math.abs(line.perItemMs - 0.5) < 0.1, `about 0.1 + 0.5 n: ${JSON.stringify(line)}`);
});

t.test('the fit follows a model that becomes slower', async (t) => {
  const fit = new ExecutionFit();
  for (let i = 0; i < 50; i++) for (const n of [1, 4]) fit.add(n, 1 + n);
  for (let i = 0; i < 50; i++) for (const n of [1, 4]) fit.add(n, 4 + 4 * n);
  const line = fit.line()!;
  t.ok(line.perItemMs > 3.5 && line.fixedMs > 3, `recent batches weigh most: ${JSON.stringify(line)}`);
});

t.test('low load: a lone request leaves as a batch of one, with no wait for a timer', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  measured(batching, 5, 1);
  await arrivals(batching, clock, 200, 5);
  t.equal(batching.waitMs([job('a', clock.now())], 0), THIS_TURN_MS, 'the next request is 200 ms off: only to the end of the turn');
  const q = new JobQueue(10, clock.start);
  let left: Job[] | undefined;
  void q
    .poll(batching.largest(), (b, idle) => batching.waitMs(b, idle))
    .then((jobs) => {
      left = jobs;
    });
  q.enqueue(job('a', clock.now()));
  await clock.advance(THIS_TURN_MS);
  t.same(
    left?.map((j) => j.id),
    ['a'],
  );
});

t.test('before any batch has run nothing waits, and the largest batch is the ceiling', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  await arrivals(batching, clock, 0.1, 5);
  t.equal(batching.waitMs([job('a', clock.now())], 0), 0);
  t.equal(batching.largest(), 8);
});

t.test('under a backlog a batch takes as many as wait, up to the largest the fit allows', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  measured(batching, 1, 2);
  const q = new JobQueue(100, clock.start);
  for (let i = 0; i < 20; i++) q.enqueue(job(`j${i}`));
  const first = await q.poll(batching.largest(), (b, idle) => batching.waitMs(b, idle));
  t.equal(first.length, 8, 'the ceiling at once, without waiting');
  const second = await q.poll(batching.largest(), (b, idle) => batching.waitMs(b, idle));
  t.equal(second.length, 8, 'and again');
  t.equal(q.size, 4, 'what is left waits for the next worker');
});

t.test('a large fixed cost and close arrivals: the batch waits for more, as long as one more is worth it', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  measured(batching, 20, 1);
  await arrivals(batching, clock, 1, 20);
  const q = new JobQueue(100, clock.start);
  let left: Job[] | undefined;
  void q
    .poll(batching.largest(), (b, idle) => batching.waitMs(b, idle))
    .then((jobs) => {
      left = jobs;
    });
  q.enqueue(job('a', clock.now()));
  batching.arrived();
  // With one held the window is (20 - 1) / 2 = 9.5 ms.
  t.ok(batching.state().waitMs > 1 && batching.state().waitMs <= 9.5, `waits for a second: ${batching.state().waitMs} ms`);
  for (const id of ['b', 'c', 'd']) {
    await clock.advance(1);
    q.enqueue(job(id, clock.now()));
    batching.arrived();
  }
  t.equal(left, undefined, 'still forming while requests keep coming');
  await clock.advance(20);
  t.ok(left && left.length === 4, `then leaves with what came: ${left?.length}`);
  t.equal(batching.waitMs([job('x', clock.now())], 1), THIS_TURN_MS, 'while another worker idles only to the end of the turn: it takes the next request');
});

t.test('the wait stops where one more no longer pays: k requests waiting cost more than the fixed cost saves', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  measured(batching, 20, 3);
  await arrivals(batching, clock, 2, 20);
  const held = (n: number): Job[] => Array.from({ length: n }, (_, i) => job(`h${i}`, clock.now()));
  t.ok(batching.waitMs(held(1), 0) > 0, '1 held: window (20 - 3) / 2 = 8.5 ms > the 2 ms gap');
  t.ok(batching.waitMs(held(3), 0) > 0, '3 held: window (20 - 9) / 4 = 2.75 ms > 2 ms');
  t.equal(batching.waitMs(held(4), 0), THIS_TURN_MS, '4 held: window (20 - 12) / 5 = 1.6 ms < 2 ms: leaves with what this turn brings');
  t.equal(batching.waitMs(held(7), 0), 0, '7 held: window (20 - 21) / 8 < 0: leaves now');
});

t.test('a window shorter than a timer can time waits to the end of the turn: requests read in a burst do not hold a batch for a millisecond', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  measured(batching, 0.3, 0.1);
  for (let i = 0; i < 20; i++) batching.arrived(); // a burst: gaps of 0
  t.equal(batching.waitMs([job('a', clock.now())], 0), THIS_TURN_MS, 'the window, (0.3 - 0.1) / 2 = 0.1 ms, is below 1 ms');
});

t.test('the latency target bounds the wait: the oldest request never waits past it, counting the batch run', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching({ ...LIMITS, latencyTargetMs: 60 }, clock.now);
  measured(batching, 40, 1);
  await arrivals(batching, clock, 1, 20);
  const oldest = job('a', clock.now() - 15);
  const wait = batching.waitMs([oldest, job('b', clock.now())], 0);
  // 60 - 15 waited - t(3) 43 = 2 ms of room, under the window (40 - 2) / 3.
  t.ok(wait > 0 && wait <= 2 + 1e-9, `bounded: ${wait} ms`);
  t.equal(batching.waitMs([job('c', clock.now() - 30), job('d', clock.now())], 0), 0, 'no room left: it leaves now');
  const delayed = new AdaptiveBatching({ ...LIMITS, maxWaitMs: 3 }, clock.now);
  measured(delayed, 40, 1);
  await arrivals(delayed, clock, 1, 20);
  t.ok(delayed.waitMs([job('e', clock.now() - 1)], 0) <= 2 + 1e-9, 'a maxBatchDelay set without batch_size bounds the wait from the oldest arrival');
});

t.test("the model's batch dimension caps the batch: a model exported with batch 1 stays at 1", async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  batching.batchDimension = 1;
  measured(batching, 20, 1);
  await arrivals(batching, clock, 1, 20);
  t.equal(batching.largest(), 1);
  t.equal(batching.waitMs([job('a', clock.now())], 0), 0, 'a full batch of one leaves at once');
  batching.batchDimension = 4;
  t.equal(batching.largest(), 4);
});

t.test('at capacity a batch waits to be full: enough requests outstanding to fill every worker, also while another worker idles', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  // mnist's shape: so small a fixed cost that one more request never pays by the window.
  measured(batching, 0.3, 0.15);
  await arrivals(batching, clock, 0.2, 40);
  const held = (n: number): Job[] => Array.from({ length: n }, (_, i) => job(`h${i}`, clock.now()));
  const atCapacity = { outstanding: 24, workers: 2 };
  t.equal(batching.waitMs(held(3), 0, { outstanding: 4, workers: 2 }), 0, 'below capacity: the window, (0.3 - 0.45) / 4, says leave');
  t.ok(Math.abs(batching.waitMs(held(3), 0, atCapacity) - 1.5) < 1e-9, `at capacity: a full batch's time, 0.3 + 8 × 0.15 ms: ${batching.state().waitMs}`);
  t.ok(batching.waitMs(held(3), 1, atCapacity) > 1, 'also while another worker idles');
  t.equal(batching.waitMs(held(8), 0, atCapacity), 0, 'full: leaves');
  const late = [job('old', clock.now() - 99.5), ...held(2)];
  t.equal(batching.waitMs(late, 0, atCapacity), 0, 'never past the latency target');

  const q = new JobQueue(100, clock.start);
  let left: Job[] | undefined;
  void q
    .poll(batching.largest(), (b, idle) => batching.waitMs(b, idle, atCapacity))
    .then((jobs) => {
      left = jobs;
    });
  for (let i = 0; i < 7; i++) {
    q.enqueue(job(`j${i}`, clock.now()));
    await clock.advance(0.2);
  }
  t.equal(left, undefined, 'seven held: still forming');
  q.enqueue(job('j7', clock.now()));
  await clock.advance(0);
  t.equal(left?.length, 8, 'the eighth fills it and it leaves');
});

t.test(
  "a closed loop at capacity keeps waiting for full batches while its answered clients are on their way back: the pool's peak, not the moment's",
  async (t) => {
    const clock = movedClock();
    const batching = new AdaptiveBatching(LIMITS, clock.now);
    measured(batching, 0.3, 0.15);
    await arrivals(batching, clock, 0.2, 40);
    const held = (n: number): Job[] => Array.from({ length: n }, (_, i) => job(`h${i}`, clock.now()));
    // 32 clients, two workers: one forming batch full and the other's out, the rest on their way back.
    t.ok(batching.waitMs(held(7), 0, { outstanding: 9, workers: 2 }) > 0, '16 held: at capacity');
    await clock.advance(0.5);
    // The full batch has left and its clients' answers are on the way out; the next forms from the first returns.
    const forming = held(3);
    t.ok(
      Math.abs(batching.waitMs(forming, 0, { outstanding: 8, workers: 2 }) - 1.5) < 1e-9,
      `3 forming and 8 in the other worker's batch: still at capacity, a full batch's time: ${batching.state().waitMs}`,
    );
    t.ok(batching.waitMs(forming, 1, { outstanding: 0, workers: 2 }) > 1, 'also while the other worker idles between its batches');
    // The load has gone: two spans later the peak is forgotten and the window rules again.
    await clock.advance(101);
    t.equal(batching.waitMs(held(3), 0, { outstanding: 2, workers: 2 }), 0, 'a load that has passed makes no batch wait');
  },
);

t.test('full only with the clients on their way back, a batch waits for a late one as long as a return takes, not a whole batch', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  // 8 clients of a 50 ms batch on one worker, each sending again 1 ms after its answer.
  measured(batching, 50, 0.5);
  await answeredAndBack(batching, clock, { everyMs: 54, size: 8, ms: 54, times: 4 });
  const held = (n: number): Job[] => Array.from({ length: n }, (_, i) => job(`h${i}`, clock.now()));
  // A split loop: one back while the other seven's batch runs, eight held in all.
  t.ok(batching.waitMs(held(1), 0, { outstanding: 7, workers: 1 }) > 3, 'one held, seven in the batch running: full by the moment, it waits');
  await clock.advance(54);
  batching.ran(8, 54);
  await clock.advance(1);
  const wait = batching.waitMs(held(7), 0, { outstanding: 0, workers: 1 });
  t.ok(wait > 0 && wait <= 3 + 1e-9, `seven back, the eighth late: twice a return's lag and a timer's resolution, not t(8): ${wait} ms`);
});

t.test("a closed loop smaller than the workers' batches never reads as capacity: 7 clients on one worker of batches of 8", async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  measured(batching, 0.3, 0.15);
  await arrivals(batching, clock, 0.2, 40);
  for (let k = 1; k <= 7; k++) {
    const batch = Array.from({ length: k }, (_, i) => job(`h${i}`, clock.now()));
    t.ok(batching.waitMs(batch, 0, { outstanding: 7 - k, workers: 1 }) < 1, `${k} held, ${7 - k} outstanding: no wait for an eighth`);
    await clock.advance(0.1);
  }
});

t.test('the fit forgets a size not seen lately: after a load has passed its batches no longer shape the line', async (t) => {
  const fit = new ExecutionFit();
  for (let i = 0; i < 3; i++) for (let n = 1; n <= 8; n++) fit.add(n, 20);
  t.ok(fit.line()!.fixedMs > 10, 'under load every size took 20 ms: a large fixed cost');
  for (let i = 0; i < 300; i++) fit.add(1, 0.5);
  t.same(fit.line(), { fixedMs: 0, perItemMs: 0.5 }, 'then only single requests: the line through them, with no fixed cost');
});

t.test("the expected gap is the recent arrivals' mean, the silence since the last counted", async (t) => {
  const gaps = new ArrivalGaps();
  t.equal(gaps.expectedGap(0), undefined, 'nothing before two arrivals');
  for (let i = 0; i < 32; i++) gaps.arrived(i * 0.5);
  t.ok(Math.abs(gaps.expectedGap(15.5)! - 0.5) < 0.02, `every 0.5 ms: ${gaps.expectedGap(15.5)}`);
  t.ok(gaps.expectedGap(48)! > 1, 'a long silence raises it');
  for (let i = 0; i < 32; i++) gaps.arrived(100 + i * 10);
  t.ok(Math.abs(gaps.expectedGap(410)! - 10) < 0.5, `a slower load replaces the faster one: ${gaps.expectedGap(410)}`);
});

/**
 * One worker serving `clients` closed-loop clients for `rounds` batches: each client sends again
 * `rttMs` after its answer (one after another, `rttMs` apart: longer than a turn of the event
 * loop, THIS_TURN_MS here), a batch runs `runMs`; the queue,
 * the batching and the clock are the pool's. The sizes of the batches that left, and each
 * request's time from sending to its batch leaving. Enqueued before `arrived()`, as the model does.
 */
async function closedLoop(
  batching: AdaptiveBatching,
  clock: ReturnType<typeof movedClock>,
  clients: number,
  rounds: number,
  runMs: number,
  rttMs = 1,
): Promise<{ sizes: number[]; waits: number[] }> {
  const q = new JobQueue(100, clock.start);
  const sends = Array.from({ length: clients }, (_, i) => clock.now() + rttMs * (i + 1));
  const sizes: number[] = [];
  const waits: number[] = [];
  const sendDue = (): void => {
    for (let c = 0; c < clients; c++) {
      if (sends[c]! > clock.now()) continue;
      q.enqueue(job(String(c), clock.now()));
      batching.arrived();
      sends[c] = Number.POSITIVE_INFINITY;
    }
  };
  for (let round = 0; round < rounds; round++) {
    let left: Job[] | undefined;
    void q
      .poll(batching.largest(), (b, idle) => batching.waitMs(b, idle, { outstanding: q.size, workers: 1 }))
      .then((jobs) => {
        left = jobs;
      });
    for (let step = 0; step < 2000 && !left; step++) {
      sendDue();
      await clock.advance(0.1);
    }
    if (!left) throw new Error('no batch left in 200 ms');
    sizes.push(left.length);
    for (const j of left) waits.push(clock.now() - j.arrivedAt);
    // The batch runs: no poll waits meanwhile, so the clock moves without a turn of the event loop.
    for (let step = 0; step < runMs / 0.1; step++) {
      sendDue();
      clock.move(0.1);
    }
    batching.ran(left.length, runMs);
    left.forEach((j, rank) => {
      sends[Number(j.id)] = clock.now() + rttMs * (rank + 1);
    });
  }
  return { sizes, waits };
}

t.test(
  'a closed loop of a few clients on one worker: the clients answered together send again together, and the batch waits for them, and a loop split (a batch that left without them) joins again (review-4 F10)',
  async (t) => {
    for (const clients of [2, 4, 8]) {
      const clock = movedClock();
      const batching = new AdaptiveBatching(LIMITS, clock.now);
      // A large fixed cost (a GPU, a remote call, a sleep): one more request in the batch is worth ~25 ms.
      for (let i = 0; i < 3; i++) for (let n = 1; n <= 8; n++) batching.ran(n, 50 + 0.5 * n);
      const { sizes } = await closedLoop(batching, clock, clients, 30, 50);
      t.same(
        sizes.slice(2),
        Array(28).fill(clients),
        `${clients} clients: from the second batch on (the first leaves before any return was seen), every batch holds them all: ${sizes.join(' ')}`,
      );
    }
  },
);

t.test('a closed loop of one client does not wait for the others that are not there', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  for (let i = 0; i < 3; i++) for (let n = 1; n <= 8; n++) batching.ran(n, 50 + 0.5 * n);
  const { sizes, waits } = await closedLoop(batching, clock, 1, 20, 50);
  t.same(sizes, Array(20).fill(1));
  t.ok(Math.max(...waits.slice(2)) <= THIS_TURN_MS + 0.1 + 1e-9, `each leaves by the end of its turn: ${Math.max(...waits.slice(2))} ms`);
});

t.test('returns are not waited for while other requests are outstanding: a backlog is no closed loop to join', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  measured(batching, 50, 0.5);
  // Returns seen lately 1 ms after their answers, and arrivals too sparse for the mean gap to say wait.
  await answeredAndBack(batching, clock, { everyMs: 100, size: 2, ms: 51, times: 4 });
  await clock.advance(100);
  batching.ran(4, 52);
  const queuedBefore = job('q', clock.now() - 60);
  t.ok(batching.waitMs([queuedBefore], 0, { outstanding: 0, workers: 1 }) > 0, 'alone, a split loop waits for the returns');
  t.equal(batching.waitMs([queuedBefore], 0, { outstanding: 6, workers: 2 }), 0, 'past the target with a backlog: it leaves now');
  const fresh = job('f', clock.now());
  t.ok(batching.waitMs([fresh], 0, { outstanding: 0, workers: 1 }) > THIS_TURN_MS, 'alone, with room: waits for the returns');
  t.equal(batching.waitMs([fresh], 0, { outstanding: 6, workers: 2 }), THIS_TURN_MS, 'with a backlog: only to the end of the turn');
});

t.test(
  "a fresh server's fit, no batch seen yet or one size only: a closed loop of 2, 4 or 8 clients on one worker still comes to batches of them all, a flat fit's too (F7)",
  async (t) => {
    for (const clients of [2, 4, 8]) {
      for (const seen of [[], [1], [1, 3]]) {
        const clock = movedClock();
        const batching = new AdaptiveBatching(LIMITS, clock.now);
        // A batch takes 50 ms whatever its size (the echo's sleep): a flat fit once two sizes are seen.
        for (const n of seen) batching.ran(n, 50);
        const { sizes } = await closedLoop(batching, clock, clients, 30, 50);
        t.same(
          sizes.slice(4),
          Array(26).fill(clients),
          `${clients} clients, sizes seen before [${seen.join(' ')}]: from the fifth batch on all of them: ${sizes.join(' ')}`,
        );
      }
    }
  },
);

t.test('exploring a fit of one size does not make a lone client wait', async (t) => {
  const clock = movedClock();
  const batching = new AdaptiveBatching(LIMITS, clock.now);
  const { sizes, waits } = await closedLoop(batching, clock, 1, 20, 50);
  t.same(sizes, Array(20).fill(1));
  t.ok(Math.max(...waits) <= 0.1 + 1e-9, `each leaves at once: ${Math.max(...waits)} ms`);
  t.equal(batching.state().fixedMs, 0, 'the fit still one size: through the origin');
});

// Workers follow the load (workers/scaler.ts), with real worker processes of the echo model and
// delays short enough for a test: a queue that builds up adds workers up to max_worker and no
// further, none of what the queue holds is refused meanwhile, idle workers stop after the
// scale-down delay without interrupting a batch, and a model with min_worker 0 answers its first
// request (not 503) by starting a worker for it. The decisions themselves, with a clock the test
// moves, are in src/workers/scaler.test.ts.
import t, { type Test } from 'tap';
import { buildWarmEcho, predict, register, serve } from './echo-model.js';
import { metric, startTestServer, waitFor, type TestServer } from './helpers.js';

const FAST = { scale_up_delay_ms: '300', scale_down_delay_ms: '1500', scale_waiting_per_worker: '1' };

interface Autoscaled {
  minWorkers: number;
  maxWorkers: number;
  workers: Array<{ status: string }>;
  autoscale: { enabled: boolean; currentWorkers: number; desiredWorkers: number; boundHeld: string | null; limits: Record<string, number> };
}

async function described(server: TestServer, model: string): Promise<Autoscaled> {
  const [d] = (await (await fetch(`${server.urls.management}/models/${model}`)).json()) as Autoscaled[];
  return d!;
}

async function scale(t: Test, server: TestServer, model: string, min: number, max: number): Promise<void> {
  const res = await fetch(`${server.urls.management}/models/${model}?min_worker=${min}&max_worker=${max}&synchronous=true`, { method: 'PUT' });
  t.equal(res.status, 200, `${model} scaled to ${min}..${max}: ${await res.text()}`);
}

/** A series of a model's metric with one more label, e.g. reason="idle"; 0 when absent. */
async function labelled(server: TestServer, series: string, model: string, label: string): Promise<number> {
  const text = await (await fetch(`${server.urls.metrics}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series}{model_name="${model}",`) && l.includes(label));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

const workerCount = async (server: TestServer, model: string): Promise<number> => (await described(server, model)).workers.length;

t.test('a queue that builds up adds workers up to max_worker and no further, refusing none; idle, they go back to min', async (t) => {
  const lines: string[] = [];
  const server = await serve(t, FAST, undefined, (line) => lines.push(line));
  await register(t, server, 'grow', { initial_workers: 1 });
  await scale(t, server, 'grow', 1, 2);
  t.match(await described(server, 'grow'), { minWorkers: 1, maxWorkers: 2, autoscale: { enabled: true, currentWorkers: 1 } });

  // 32 requests of 400 ms: some 13 s of work for one worker, 6 for two. The queue stays long for
  // seconds after the second worker is READY, whenever the first decision came (on a loaded
  // machine it may come while few requests have arrived, and want two), so a decision with two
  // workers wants more than max_worker allows: what the describe waited for below shows.
  const total = 32;
  let answered = 0;
  const answers = Promise.all(
    Array.from({ length: total }, async () => {
      const res = await predict(server, 'grow', 'sleep:400');
      answered++;
      return res;
    }),
  );
  let held: Autoscaled | undefined;
  let unanswered = 0;
  await waitFor(
    async () => {
      held = await described(server, 'grow');
      unanswered = total - answered;
      return held.workers.length === 2 && held.autoscale.boundHeld === 'max_worker';
    },
    30_000,
    'two workers, and max_worker holding more back',
  );
  t.ok(unanswered > 0, `described while ${unanswered} requests were still unanswered`);
  t.match(held!.autoscale, { currentWorkers: 2, boundHeld: 'max_worker', limits: { max_worker: 2 } }, 'max_worker held');
  t.ok(held!.autoscale.desiredWorkers > 2, `wanted ${held!.autoscale.desiredWorkers}`);
  const statuses = (await answers).map((r) => r.status);
  t.same(new Set(statuses), new Set([200]), 'every request the queue held is answered');
  t.equal(await metric(server, 'ts_requests_rejected_total', 'grow'), 0, 'none refused');
  t.equal(await workerCount(server, 'grow'), 2, 'no further than max_worker');
  t.equal(await labelled(server, 'ts_worker_scale_ups_total', 'grow', 'reason="waiting"'), 1);
  t.equal(await labelled(server, 'ts_worker_scale_limited_total', 'grow', 'bound="max_worker"'), 1, 'the bound told once, not at each decision');
  const log = lines.join('\n');
  t.match(log, /grow_1\.0: Workers scaled up from 1 to 2 \(waiting: /, 'the scale-up is logged with its reason');
  // At the scale-up's decision when it already wanted more than two, else at a later one.
  t.match(log, /grow_1\.0: Workers (scaled up from 1 to 2|stay at 2) \(waiting: [^\n]*held by max_worker\)/, 'and max_worker holding it');

  await waitFor(async () => (await workerCount(server, 'grow')) === 1, 20_000, 'back to one worker');
  t.equal(await labelled(server, 'ts_worker_scale_downs_total', 'grow', 'reason="idle"'), 1);
  t.match(lines.join('\n'), /grow_1\.0: Workers scaled down from 2 to 1 \(idle: /, 'and the scale-down');
  t.equal((await predict(server, 'grow', 'after')).status, 200, 'the one left serves');
});

t.test('a request refused for a full queue adds a worker, though the average waiting stays below the target', async (t) => {
  const server = await serve(t, { ...FAST, scale_waiting_per_worker: '50', job_queue_size: '2' });
  await register(t, server, 'full', { initial_workers: 1 });
  await scale(t, server, 'full', 1, 2);
  t.equal(await metric(server, 'ts_queue_remaining_capacity', 'full'), 2, 'room for job_queue_size requests');
  const accepted = [predict(server, 'full', 'sleep:1500'), predict(server, 'full', 'a'), predict(server, 'full', 'b')];
  await waitFor(async () => (await metric(server, 'ts_queue_size', 'full')) >= 2, 10_000, 'a full queue');
  t.equal(await metric(server, 'ts_queue_remaining_capacity', 'full'), 0, 'no room left: what the alert "queue near full" reads');
  t.equal((await predict(server, 'full', 'c')).status, 503, 'refused: the queue is full');
  await waitFor(async () => (await workerCount(server, 'full')) === 2, 20_000, 'a second worker');
  t.same(
    (await Promise.all(accepted)).map((r) => r.status),
    [200, 200, 200],
    'what the queue held is answered',
  );
  t.equal(await labelled(server, 'ts_worker_scale_ups_total', 'full', 'reason="queue_full"'), 1);
});

t.test('min_worker 0: the first request waits for a worker and is answered; idle, the model has none again', async (t) => {
  const server = await serve(t, FAST);
  await register(t, server, 'cold', { initial_workers: 0 });
  await register(t, server, 'none', { initial_workers: 0 });
  await scale(t, server, 'cold', 0, 1);
  t.match(
    await described(server, 'cold'),
    { workers: [], serving: true, autoscale: { enabled: true, currentWorkers: 0 } },
    "serving (KServe's readiness): its first request starts a worker",
  );

  const first = await Promise.all(Array.from({ length: 5 }, (_, i) => predict(server, 'cold', `first ${i}`)));
  t.same(
    first.map((r) => r.status),
    [200, 200, 200, 200, 200],
    'the requests that found no worker waited for one',
  );
  t.equal(await labelled(server, 'ts_worker_scale_ups_total', 'cold', 'reason="cold_start"'), 1, 'one cold start');
  t.ok((await metric(server, 'ts_worker_start_milliseconds_count', 'cold')) >= 1, 'its start time measured');
  t.equal((await predict(server, 'none', 'x')).status, 503, 'max_worker 0 still refuses, as TorchServe');

  await waitFor(async () => (await workerCount(server, 'cold')) === 0, 20_000, 'no worker again');
  t.equal((await predict(server, 'cold', 'again')).status, 200, 'and the next request starts one again');
  t.equal(await labelled(server, 'ts_worker_scale_ups_total', 'cold', 'reason="cold_start"'), 2);
});

t.test('a scale-down stops the idle worker and lets the busy one finish its batch', async (t) => {
  const server = await serve(t, FAST);
  await register(t, server, 'busy', { initial_workers: 2 });
  await scale(t, server, 'busy', 0, 2);
  t.equal(await workerCount(server, 'busy'), 2);
  const long = predict(server, 'busy', 'sleep:4000');
  await waitFor(async () => (await workerCount(server, 'busy')) === 1, 20_000, 'the idle worker stopped');
  const answer = await long;
  t.equal(answer.status, 200, 'the batch running through the scale-down is answered');
  await waitFor(async () => (await workerCount(server, 'busy')) === 0, 20_000, 'then the other, once idle');
  t.equal(await labelled(server, 'ts_worker_scale_downs_total', 'busy', 'reason="idle"'), 2);
});

t.test("model-config.yaml's minWorkers, maxWorkers and scale keys set a model's policy, which describe shows", async (t) => {
  const yaml = 'minWorkers: 1\nmaxWorkers: 2\nscaleWaitingPerWorker: 3\nscaleUpDelayMSec: 700\nscaleDownDelayMSec: 900\n';
  const server = await serve(t, {}, yaml);
  await register(t, server, 'yaml', {});
  t.match(await described(server, 'yaml'), {
    minWorkers: 1,
    maxWorkers: 2,
    autoscale: { waitingPerWorker: 3, scaleUpDelayMSec: 700, scaleDownDelayMSec: 900, enabled: true, currentWorkers: 1, boundHeld: null },
  });
  // To the one worker it has: the scaler is off without another worker started.
  await scale(t, server, 'yaml', 1, 1);
  t.match((await described(server, 'yaml')).autoscale, { enabled: false, currentWorkers: 1 }, 'max_worker == min_worker: the scaler is off');
});

t.test("model-config.yaml's minWorkers 0 with maxWorkers 2: no worker until the first request, which starts one", async (t) => {
  const server = await serve(t, FAST, 'minWorkers: 0\nmaxWorkers: 2\n');
  await register(t, server, 'zero', {});
  t.match(await described(server, 'zero'), { minWorkers: 0, maxWorkers: 2, workers: [], autoscale: { enabled: true } });
  t.equal((await predict(server, 'zero', 'first')).status, 200, 'the first request waited for its worker');
  t.equal(await workerCount(server, 'zero'), 1);
});

t.test('useJobTicket at no worker: the first request starts one and waits for it, as without a ticket', async (t) => {
  const server = await serve(t, FAST, 'useJobTicket: true\n');
  await register(t, server, 'ticket', { initial_workers: 0 });
  await scale(t, server, 'ticket', 0, 1);
  t.equal((await predict(server, 'ticket', 'first')).status, 200, 'not 503: no worker was free, but one started for it');
  t.equal(await labelled(server, 'ts_worker_scale_ups_total', 'ticket', 'reason="cold_start"'), 1);
});

t.test("a stateful model's refusals of unknown sequences are no load: its workers do not grow for them", async (t) => {
  const server = await serve(t, FAST, 'sequenceBatching: true\n');
  await register(t, server, 'seq', { initial_workers: 0 });
  await scale(t, server, 'seq', 0, 2);
  t.equal((await predict(server, 'seq', 'opens a sequence')).status, 200);
  for (let i = 0; i < 10; i++) {
    const res = await fetch(`${server.urls.inference}/predictions/seq`, { method: 'POST', body: 'x', headers: { ts_request_sequence_id: 'ts-seq-nope' } });
    t.equal(res.status, 503, 'an unknown sequence is refused');
  }
  // Several scale-up windows (300 ms) after the refusals: long enough for them to have added a worker.
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await labelled(server, 'ts_worker_scale_ups_total', 'seq', 'reason="queue_full"'), 0, 'no scale-up for them');
  t.equal(await workerCount(server, 'seq'), 1, 'the one worker the first request started');
});

/**
 * A server whose start-up model warm.mar has a warm-up sample that, alone, is answered at once
 * (so the warm-up sends it on its 32 connections) and in a batch takes 1.2 s. The warm-up gives
 * up on those at its 600 ms timeout and ends, and they wait on in the queue, 24 behind the first
 * batch of 8, for some 3.6 s. A loaded machine can answer even a lone sample past the warm-up's
 * 100 ms (each of its three tries): then it sends no more, and the start-up is made again, up to
 * 5 times. Resolves with how many of the warm-up's own requests wait as the start-up ends.
 */
async function startedWithOwnWaiting(t: Test, lines: string[]): Promise<{ server: TestServer; ownWaiting: number }> {
  for (let attempt = 1; ; attempt++) {
    lines.length = 0;
    const server = await startTestServer(t, {
      prepare: (store) => buildWarmEcho(store, 'minWorkers: 1\nmaxWorkers: 2\nbatchSize: 8\nmaxBatchDelay: 50\n', 'batched-sleep:1200'),
      properties: { ...FAST, load_models: 'warm.mar', front_end_warmup_ms: '600' },
      serverLog: (line) => lines.push(line),
      level: 'info',
    });
    await server.startupModelsStarted;
    const ownWaiting = await metric(server, 'ts_queue_size', 'warm');
    if (ownWaiting > 1 || attempt === 5) return { server, ownWaiting };
    t.comment(`start-up ${attempt}: ${lines.find((l) => l.includes('Front end warmed up'))}`);
    await server.close();
  }
}

t.test("the front end's warm-up is no load to follow: its own requests, still waiting as a client's arrives, add no worker", async (t) => {
  // The client's request waits behind the warm-up's own while the scaler, which its arrival
  // wakes, samples the queue. Before the scaler left them out, it added a worker for them on any
  // machine (and a loaded one, reading the warm-up's requests late, took them for a client's:
  // src/http/warm-up.test.ts).
  const lines: string[] = [];
  const { server, ownWaiting } = await startedWithOwnWaiting(t, lines);
  t.ok(ownWaiting > 1, `${ownWaiting} of the warm-up's own requests wait as start-up ends: more than the one worker's share`);
  t.equal((await predict(server, 'warm', 'client')).status, 200, "the client's request, answered behind them");
  t.match((await described(server, 'warm')).autoscale, { enabled: true, currentWorkers: 1, desiredWorkers: 1, boundHeld: null });
  t.equal(await labelled(server, 'ts_worker_scale_ups_total', 'warm', 'reason='), 0, 'no worker added for the warm-up');
  t.notMatch(lines.join('\n'), /warm_1\.0: Workers/, 'nor wanted');
});

// Batches seen from both ends, with real workers: a batch formed within max_batch_delay, batches a
// busy worker holds ahead, the next batch waiting inside a busy worker, a built-in handler taking
// what is queued; and back-pressure on a real connection (a full queue refused before the body is
// read). Adaptive batching is test/adaptive-batching.test.ts's; the rest of the workers' life
// test/workers.test.ts's.
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { describe, type Echo, predict, register, serve } from './echo-model.js';
import { buildColoursMar, buildMar, FIXTURES, metric, startTestServer, waitFor } from './helpers.js';

t.test('batch_size 8, max_batch_delay 1000: 8 concurrent requests reach the handler in one call', async (t) => {
  const server = await serve(t);
  // A delay that outlasts how far apart 8 concurrent requests arrive on a busy machine: with 100 ms
  // they came as batches of 2 and 6 once in CI (Node 22, the suite's six jobs on two cores).
  await register(t, server, 'batched', { initial_workers: 1, batch_size: 8, max_batch_delay: 1000 });
  const round = async (): Promise<number[]> => {
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => predict(server, 'batched', `item ${i}`)));
    return Promise.all(answers.map(async (r) => ((await r.json()) as Echo).batchSize));
  };
  await round(); // opens the 8 keep-alive connections, so the measured round arrives together
  t.same(await round(), [8, 8, 8, 8, 8, 8, 8, 8], 'the handler saw one batch of 8');

  const started = performance.now();
  const lone = await predict(server, 'batched', 'alone');
  const ms = performance.now() - started;
  t.equal(((await lone.json()) as Echo).batchSize, 1, 'a lone request goes out as a batch of 1 when the delay is spent');
  t.comment(`a lone request took ${ms.toFixed(0)} ms with max_batch_delay 1000`);
  const bucket = async (le: string): Promise<number> => {
    const text = await (await fetch(`${server.urls.metrics}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('ts_batch_size_bucket{model_name="batched",') && l.includes(`le="${le}",}`));
    return Number(line?.split(' ').pop());
  };
  t.ok((await bucket('8')) - (await bucket('4')) >= 1, 'ts_batch_size counted the batch of 8');
});

t.test('queue full: the 503 goes out before the body is read, and the connection stays open for the next request', async (t) => {
  const server = await serve(t, { job_queue_size: '1' });
  await register(t, server, 'full', { initial_workers: 1 });
  const busy = [predict(server, 'full', 'sleep:1500'), predict(server, 'full', 'waits')];
  await waitFor(async () => (await describe(server, 'full')).jobQueueStatus.pendingRequests === 1, 10_000, 'a full queue');

  // One keep-alive connection: a request that announces 1 MB and sends 1 KB of it, then another.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const { hostname, port } = new URL(server.urls.inference);
  const refused = await new Promise<{ status: number; retryAfter: unknown; body: string }>((resolve, reject) => {
    const req = request({ hostname, port, agent, method: 'POST', path: '/predictions/full', headers: { 'content-length': 1_000_000 } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
    });
    req.on('error', reject);
    req.write(Buffer.alloc(1024));
    // The rest follows only once the answer is in: the server must not have waited for it.
    req.on('response', () => req.end(Buffer.alloc(1_000_000 - 1024)));
  });
  t.equal(refused.status, 503, 'refused on its headers, the body not yet sent');
  t.equal(refused.retryAfter, '1');
  t.match(JSON.parse(refused.body), { code: 503, type: 'ServiceUnavailableException', message: /^Model "full" has no worker/ });
  t.equal(await metric(server, 'ts_requests_rejected_total', 'full'), 1, 'counted as a refusal');

  t.same(
    (await Promise.all(busy)).map((r) => r.status),
    [200, 200],
    'the accepted requests are answered',
  );
  const next = await new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
    const req = request({ hostname, port, agent, method: 'POST', path: '/predictions/full' }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end('after');
  });
  t.same(next, { status: 200, reused: true }, 'the next request on the same connection is answered');
});

t.test('batches ahead: a busy worker holds up to sixteen more of a model of short batches, one of a model of long ones', async (t) => {
  const server = await serve(t);
  await register(t, server, 'ahead', { initial_workers: 2 });
  // Idle workers take turns (each asks again at the back of the line): both time a quick batch.
  for (let i = 0; i < 4; i++) t.equal((await predict(server, 'ahead', 'warm')).status, 200);
  const quick = (n: number): Array<Promise<Response>> => Array.from({ length: n }, (_, i) => predict(server, 'ahead', `quick ${i}`));
  const pending = async (): Promise<number> => (await describe(server, 'ahead')).jobQueueStatus.pendingRequests;

  // ts_queue_latency_microseconds adds up each request's wait until a worker took it: a job taken
  // ahead waits about 0 s, one left in the queue 3-4 s (a slow request's time, and its turn; up to
  // 2 s more on a machine busy with other work: 38.9 s for twelve, slow ones of 2 s, in a run beside
  // other test files).
  // A loaded machine slows the quick batches the workers time, so each may take a few fewer than the
  // most: `fewestAhead` and `mostAhead` bound the two workers' batches ahead together. It also sends
  // the quick ones late, and the last of them, those left in the queue, then wait less than the slow
  // request's time: 3.8 s for four in npm test beside process accounting (13:35 on 2026-12-07).
  // A quarter of a second each still tells them from jobs taken ahead, which wait about 0 s.
  const round = async (quickOnes: number, fewestAhead: number, mostAhead: number, what: string): Promise<void> => {
    const waitedBefore = await metric(server, 'ts_queue_latency_microseconds', 'ahead');
    const arrived = await metric(server, 'ts_inference_requests_total', 'ahead');
    // 3 s, for the quick ones to arrive while both workers are on them (36 came in over 2 s at load 30).
    const slow = [predict(server, 'ahead', 'sleep:3000'), predict(server, 'ahead', 'sleep:3000')];
    await waitFor(async () => (await metric(server, 'ts_inference_requests_total', 'ahead')) === arrived + 2, 10_000, 'both slow requests in');
    let slowDone = false;
    void Promise.all(slow).then(() => (slowDone = true));
    const queued = quick(quickOnes);
    await waitFor(async () => (await metric(server, 'ts_inference_requests_total', 'ahead')) === arrived + 2 + quickOnes, 10_000, 'the quick ones in');
    t.equal(await pending(), quickOnes, 'jobs taken ahead still count as pending');
    t.notOk(slowDone, 'while both workers were still on their slow request');
    t.same(
      (await Promise.all([...slow, ...queued])).map((r) => r.status),
      Array(2 + quickOnes).fill(200),
      'every request answered',
    );
    const waited = ((await metric(server, 'ts_queue_latency_microseconds', 'ahead')) - waitedBefore) / 1e6;
    t.ok(
      waited > (quickOnes - mostAhead) * 0.25 && waited < (quickOnes - fewestAhead) * 5.0,
      `${what}: ${quickOnes - mostAhead} to ${quickOnes - fewestAhead} waited in the queue (${waited.toFixed(1)} s of waits)`,
    );
  };
  await round(36, 24, 32, 'batches of a few ms: each worker took twelve to sixteen ahead (eight was the most before)');
  await round(8, 2, 2, 'batches of 3 s: each worker took one ahead');
});

t.test('the next batch waits inside a busy worker: timed from its own start, and given to another worker if this one dies', async (t) => {
  const server = await serve(t);
  await register(t, server, 'piped', { initial_workers: 1, response_timeout: 3 });
  const pending = async (): Promise<number> => (await describe(server, 'piped')).jobQueueStatus.pendingRequests;
  const batchesTaken = (): Promise<number> => metric(server, 'ts_batch_size_count', 'piped');
  /**
   * Sends an opener that keeps the worker busy for 2 s, then `a` and `b`, which queue behind it;
   * resolves once the opener is answered, when `a` has gone to the worker and `b` behind it. (With
   * 300 ms a loaded npm test saw the opener answered before the two were, 14:54 on 2026-12-07.)
   */
  const twoBehindABusyWorker = async (a: string, b: string): Promise<[Promise<Response>, Promise<Response>]> => {
    const before = await batchesTaken();
    const opener = predict(server, 'piped', 'sleep:2000');
    await waitFor(async () => (await batchesTaken()) > before, 10_000, 'the opener in the worker');
    const sent: [Promise<Response>, Promise<Response>] = [predict(server, 'piped', a), predict(server, 'piped', b)];
    await waitFor(async () => (await pending()) >= 2, 10_000, 'two requests behind it');
    t.equal((await opener).status, 200);
    return sent;
  };

  // Each sleeps 1.6 s: 3.2 s in the worker, over the 3 s timeout, is fine because each batch is
  // timed from its own start.
  const [second, third] = await twoBehindABusyWorker('sleep:1600', 'sleep:1600');
  t.equal(await batchesTaken(), 3, 'both queued requests went to the busy worker: three batches taken, none left');
  t.same([(await second).status, (await third).status], [200, 200], 'neither timed out');

  // Again, and the worker is killed while it runs the first of the two: that one fails, the one
  // behind it was never started and is answered by the replacement.
  const [running, behind] = await twoBehindABusyWorker('sleep:2500', 'after the kill');
  const { pid } = (await describe(server, 'piped')).workers[0]!;
  process.kill(pid, 'SIGKILL');
  t.equal((await running).status, 507, 'the batch the worker was on: "Worker died." (killed from outside: 507)');
  const answer = await behind;
  t.equal(answer.status, 200, 'the batch behind it went to the replacement');
  t.match(await answer.json(), { params: { body: { kind: 'text', value: 'after the kill' } } });
  t.not((await describe(server, 'piped')).workers[0]!.pid, pid, 'by a new worker');
  t.equal(await metric(server, 'ts_queue_wait_seconds_count', 'piped'), 6, 'six predictions, each wait counted once: the one given to the replacement too');

  // And scaled down to no worker while it runs one batch with another behind: it answers both first.
  const [current, next] = await twoBehindABusyWorker('sleep:300', 'before the scale-down');
  const scaled = await fetch(`${server.urls.management}/models/piped?min_worker=0&max_worker=0&synchronous=true`, { method: 'PUT' });
  t.equal(scaled.status, 200, await scaled.text());
  t.same([(await current).status, (await next).status], [200, 200], 'both answered');
  t.same((await describe(server, 'piped')).workers, [], 'then the worker went');
});

t.test(
  "a built-in handler with no batch_size takes what is queued at once (builtin_handler_batch_size); a batch_size given, or a handler of the user's, keeps one at a time",
  async (t) => {
    const log: string[] = [];
    const server = await startTestServer(t, {
      serverLog: (line) => log.push(line),
      prepare: (store) => {
        buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
        buildColoursMar(store);
      },
    });
    const image = await (await import('sharp'))
      .default({ create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 20, b: 20 } } })
      .png()
      .toBuffer();
    // 16 requests queue while the model's one worker is still loading; it then takes them as it may.
    const batchesOf = async (name: string, url: string, params: string, body: Buffer | string): Promise<{ batches: number; sizes: number[] }> => {
      const res = await fetch(`${server.urls.management}/models?url=${url}&model_name=${name}&initial_workers=1&synchronous=false${params}`, {
        method: 'POST',
      });
      t.equal(res.status, 202, await res.text());
      const done = await Promise.all(
        Array.from({ length: 16 }, () => fetch(`${server.urls.inference}/predictions/${name}`, { method: 'POST', body, signal: AbortSignal.timeout(60_000) })),
      );
      t.same(
        done.map((r) => r.status),
        Array(16).fill(200),
        `${name}: every request answered`,
      );
      const sizes = name.startsWith('echo') ? await Promise.all(done.map(async (r) => ((await r.json()) as Echo).batchSize)) : [];
      t.equal(await metric(server, 'ts_batch_size_sum', name), 16, `${name}: 16 requests ran`);
      return { batches: await metric(server, 'ts_batch_size_count', name), sizes };
    };

    const builtin = await batchesOf('builtin', 'colours.mar', '', image);
    t.ok(builtin.batches >= 2 && builtin.batches < 16, `image_classifier with nothing set: batches of up to 8 (${builtin.batches} batches)`);
    const [described] = (await (await fetch(`${server.urls.management}/models/builtin`)).json()) as Array<{ batchSize: number; maxBatchDelay: number }>;
    t.match(described, { batchSize: 1, maxBatchDelay: 100 }, "describe keeps TorchServe's defaults");
    t.equal((await batchesOf('explicit', 'colours.mar', '&batch_size=1', image)).batches, 16, 'batch_size=1 given: one at a time');
    t.ok(
      log.some((l) =>
        l.includes(
          'Model builtin: built-in handler image_classifier and no batch_size: a worker takes up to 8 queued requests at once (builtin_handler_batch_size), and a batch that runs alone uses every core (adaptiveThreads)',
        ),
      ),
      'the fast defaults are said in the log',
    );
    t.notOk(
      log.some((l) => l.includes('Model explicit: built-in handler')),
      'not for a model whose batch_size was given',
    );
    const custom = await batchesOf('echo_custom', 'echo.mar', '', 'x');
    t.equal(custom.batches, 16, "the user's handler: one at a time");
    t.same(new Set(custom.sizes), new Set([1]), 'and it saw batches of 1');
  },
);

// Workers never lose a request: every fault test/fixtures/echo_handler.ts can inject (a hang, a
// native crash, an exit, an OOM kill, a worker killed from outside under load) ends in an answer,
// and the pool comes back.
import t from 'tap';
import { describe, predict, register, serve } from '../echo-model.js';
import { errorBody, metric, waitFor } from '../helpers.js';

t.test('a hung handler: 500 after response_timeout, other models serve meanwhile, the next request succeeds', async (t) => {
  const server = await serve(t);
  await register(t, server, 'slow', { initial_workers: 1, response_timeout: 1 });
  await register(t, server, 'other', { initial_workers: 1 });

  const hung = predict(server, 'slow', 'hang');
  const meanwhile = await predict(server, 'other', 'hello');
  t.equal(meanwhile.status, 200, 'another model answers while the handler hangs');
  const res = await hung;
  t.equal(res.status, 500);
  t.same(await errorBody(res), { code: 500, type: 'InternalServerException', message: 'Worker died.' });

  const next = await predict(server, 'slow', 'hello');
  t.equal(next.status, 200, 'the request after the timeout waits for the replacement worker and succeeds');
  t.equal(await metric(server, 'ts_response_timeouts_total', 'slow'), 1);
  t.equal(await metric(server, 'ts_worker_restarts_total', 'slow'), 1);
  t.equal((await describe(server, 'slow')).workers[0]!.status, 'READY');
});

t.test('a worker that crashes, exits or is OOM-killed mid-request: a JSON error, then READY again', async (t) => {
  const server = await serve(t);
  await register(t, server, 'fragile', { initial_workers: 1 });
  const cases = [
    { fault: 'crash', status: 500, what: 'a native crash (abort)' },
    { fault: 'exit', status: 500, what: 'process.exit in the handler' },
    { fault: 'oom-kill', status: 507, what: 'a SIGKILL the server did not send, as the OOM killer' },
  ];
  for (const c of cases) {
    const res = await predict(server, 'fragile', c.fault);
    t.equal(res.status, c.status, `${c.what}: status`);
    t.same(await errorBody(res), { code: c.status, type: 'InternalServerException', message: 'Worker died.' }, `${c.what}: body`);
    t.equal((await describe(server, 'fragile')).workers[0]!.status, 'UNLOADING', `${c.what}: describe shows the worker down`);
    t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, `${c.what}: still Healthy inside the recovery window`);
    const next = await predict(server, 'fragile', 'hello');
    t.equal(next.status, 200, `${c.what}: the next request is served by the replacement`);
    t.equal((await describe(server, 'fragile')).workers[0]!.status, 'READY');
  }
  t.equal(await metric(server, 'ts_worker_restarts_total', 'fragile'), 3);
});

t.test('500 requests at concurrency 16 while a worker is killed every 25: all answered, pool back to full size', async (t) => {
  const server = await serve(t);
  await register(t, server, 'soak', { initial_workers: 2 });
  const total = 500;
  const statuses = new Map<number, number>();
  let sent = 0;
  let answered = 0;
  let kills = 0;
  const killed = new Set<number>();
  const killOne = async (): Promise<void> => {
    const ready = (await describe(server, 'soak')).workers.filter((w) => w.status === 'READY' && w.pid > 0);
    if (ready.length === 0) return;
    try {
      const pid = ready[kills % ready.length]!.pid;
      process.kill(pid, 'SIGKILL');
      killed.add(pid);
      kills++;
    } catch {
      /* it died on its own a moment ago */
    }
  };
  const client = async (): Promise<void> => {
    while (sent < total) {
      sent++;
      const res = await predict(server, 'soak', `request ${sent}`);
      const body = await res.text();
      if (res.status !== 200) {
        const err = JSON.parse(body) as { code: number; message: string };
        t.equal(err.code, res.status, `error ${res.status} is a TorchServe JSON body`);
      }
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (++answered % 25 === 0) await killOne();
    }
  };
  await Promise.all(Array.from({ length: 16 }, client));

  t.equal(answered, total, 'every request got an answer');
  t.ok(kills >= 10, `workers were killed under load (${kills} times)`);
  t.ok((statuses.get(200) ?? 0) > total / 2, `most requests succeeded: ${JSON.stringify(Object.fromEntries(statuses))}`);
  t.same(
    [...statuses.keys()].filter((s) => s !== 200 && s !== 500 && s !== 507),
    [],
    'failures are only "Worker died."',
  );
  // The last kill may land after the last answer: wait until no killed worker is in the pool.
  await waitFor(
    async () => {
      const { workers } = await describe(server, 'soak');
      return workers.length === 2 && workers.every((w) => w.status === 'READY' && !killed.has(w.pid));
    },
    30_000,
    'both workers READY, none of them one the test killed',
  );
  const after = await describe(server, 'soak');
  t.same(
    after.workers.map((w) => w.status),
    ['READY', 'READY'],
    'the pool is back to its full size, all READY',
  );
  t.equal((await predict(server, 'soak', 'after')).status, 200);
});

t.test(
  'workers killed as they start, under load: every request is answered (200, or 503 with Retry-After at the queue deadline, or a worker error), none waits without bound',
  async (t) => {
    // default_queue_timeout=2: no request may wait for a worker longer than 2 s, while the restart
    // backoff of workers that never stay up grows past it (1, 1, 2, 3, 5 ... s).
    const server = await serve(t, { default_queue_timeout: '2' });
    await register(t, server, 'crashy', { initial_workers: 2 });
    let killing = true;
    const killer = (async () => {
      while (killing) {
        for (const w of (await describe(server, 'crashy')).workers) {
          try {
            if (w.pid > 0) process.kill(w.pid, 'SIGKILL');
          } catch {
            // gone already
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const outcomes = new Map<string, number>();
    const count = (key: string): void => void outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    const deadline = Date.now() + 10_000;
    // 8 clients for 10 s; a request not back in 8 s (4 times the queue deadline) waited without bound.
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (Date.now() < deadline) {
          const res = await fetch(`${server.urls.inference}/predictions/crashy`, {
            method: 'POST',
            body: 'sleep:50',
            signal: AbortSignal.timeout(8_000),
          }).catch((err: Error) => err);
          if (res instanceof Error) {
            count(`no answer: ${res.name}`);
            continue;
          }
          const body = await res.text();
          if (res.status === 503) count(`503 ${res.headers.get('retry-after') ? 'with' : 'without'} Retry-After`);
          else count(String(res.status));
          if (res.status >= 500 && res.status !== 503 && res.status !== 507) t.match(body, /Worker died/, 'a worker error names itself');
        }
      }),
    );
    killing = false;
    await killer;
    const seen = Object.fromEntries(outcomes);
    t.comment(JSON.stringify(seen));
    t.notOk(
      Object.keys(seen).some((k) => k.startsWith('no answer') || k.endsWith('without Retry-After')),
      'every request answered; every 503 says when to retry',
    );
    t.ok(
      Object.keys(seen).every((k) => ['200', '500', '507', '503 with Retry-After'].includes(k)),
      `only answers, refusals and worker errors: ${Object.keys(seen).join(', ')}`,
    );
    t.ok((seen['503 with Retry-After'] ?? 0) > 0, 'requests queued past the deadline were answered 503 then');
  },
);

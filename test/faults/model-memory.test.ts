// Models load when asked and leave when room is needed (issue 33 item 2): with room for two of
// three models, a request for the third unloads the least recently used idle one, never one with a
// request in flight; an unloaded model's next request loads it and is answered; one that cannot fit
// at all is answered 507 and the server stays up. Every request sent is answered.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { derivedMemoryBudget } from '../../dist/src/config/server-config.js';
import { LOAD_HEADROOM, WORKER_BASE_BYTES } from '../../dist/src/models/model-memory.js';
import { describe as describeModel, predict, serve } from '../echo-model.js';
import { errorBody, metric, type TestServer, waitFor } from '../helpers.js';
import { survived } from './survival.js';

interface Residency {
  loaded: boolean;
  lastUsed: string | null;
  serving: boolean;
  workers: Array<{ pid: number }>;
}

async function residency(server: TestServer, model: string): Promise<Residency> {
  return (await describeModel(server, model)) as unknown as Residency;
}

async function registerEcho(server: TestServer, name: string): Promise<{ status: number; message: string }> {
  const res = await fetch(`${server.urls.management}/models?url=echo.mar&model_name=${name}&initial_workers=1&synchronous=true`, { method: 'POST' });
  return { status: res.status, message: ((await res.json()) as { status?: string; message?: string }).status ?? '' };
}

t.test("the default budget: 80% of the machine's memory, or of the cgroup's limit when that is smaller", async (t) => {
  const GiB = 1024 ** 3;
  t.equal(derivedMemoryBudget(24 * GiB, 64 * GiB), Math.floor(0.8 * 24 * GiB), 'the machine, under a larger cgroup limit');
  t.equal(derivedMemoryBudget(24 * GiB, 4 * GiB), Math.floor(0.8 * 4 * GiB), "a container's 4 GiB limit");
});

t.test('with room for two models of three, the least recently used idle one makes room', async (t) => {
  const server = await serve(t, { max_loaded_models: '2' });
  let sent = 0;
  let answered = 0;
  const ask = async (model: string, body = 'hello'): Promise<number> => {
    sent += 1;
    const res = await predict(server, model, body);
    await res.arrayBuffer();
    answered += 1;
    return res.status;
  };
  for (const name of ['a', 'b']) t.equal((await registerEcho(server, name)).status, 200, `${name} registered and loaded`);
  const third = await registerEcho(server, 'c');
  t.equal(third.status, 200, 'c registered');
  t.match(
    third.message,
    /not loaded: 2 models are loaded already \(max_loaded_models\); its first request loads it/,
    'the answer says c is not loaded, and why',
  );
  t.same(
    [(await residency(server, 'a')).loaded, (await residency(server, 'b')).loaded, (await residency(server, 'c')).loaded],
    [true, true, false],
    'describe tells registered from loaded',
  );
  t.equal((await residency(server, 'c')).serving, true, 'an unloaded model still serves: its request loads it');
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, '/ping is healthy with a model unloaded');

  t.equal(await ask('a'), 200, 'a answered');
  t.equal(await ask('b'), 200, 'b answered');
  t.equal(await ask('c'), 200, "c's first request loads it and is answered");
  t.same([(await residency(server, 'a')).loaded, (await residency(server, 'c')).loaded], [false, true], 'a, the least recently used, was unloaded for c');
  t.equal((await residency(server, 'a')).workers.length, 0, "a's worker is gone");
  t.equal(await metric(server, 'ts_model_unloads_total', 'a'), 1, 'ts_model_unloads_total counts the unload');
  t.equal(await metric(server, 'ts_model_loaded', 'a'), 0, 'ts_model_loaded says a is not loaded');
  t.equal(await metric(server, 'ts_model_loads_total', 'c'), 1, 'ts_model_loads_total counts the load');
  t.equal(await metric(server, 'ts_model_load_seconds_count', 'c'), 1, 'ts_model_load_seconds has its time');

  // b is now the least recently used, but busy: c goes instead.
  const busy = ask('b', 'sleep:1500');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(await ask('a'), 200, 'a, unloaded, is answered after its load');
  t.equal(await busy, 200, "b's request in flight is answered");
  t.same(
    [(await residency(server, 'a')).loaded, (await residency(server, 'b')).loaded, (await residency(server, 'c')).loaded],
    [true, true, false],
    'b, busy, was kept; c, idle, was unloaded',
  );
  t.ok((await residency(server, 'b')).lastUsed, 'describe says when a model was last used');

  // All three asked for at once, a few times over: each is answered, whatever is unloaded when.
  // One whose room the busy models hold waits for one of them to fall idle.
  const rounds = await Promise.all(Array.from({ length: 9 }, (_, i) => ask(['a', 'b', 'c'][i % 3]!, i < 3 ? 'sleep:300' : 'hello')));
  t.same(rounds, Array(9).fill(200), 'every request at once is answered 200, those waiting for room too');
  t.equal(await ask('c'), 200, 'and c once more, alone: 200');
  await survived(t, server, { models: ['a', 'b', 'c'], sent, answered });
});

t.test('with a memory budget for two workers and a half, the third model unloads the least recently used', async (t) => {
  // One echo worker's PSS P, measured on a server of its own, sizes the budget: the same measure
  // the server takes. A model not loaded yet counts as the estimate E (echo has no model file), so
  // room for P + E + P/2 (the budget less LOAD_HEADROOM, which every decision leaves to loads) takes
  // a and b (P + E) but not c besides them (2P + E), and the workers' own PSS may be from 0.75P to
  // 1.5P. (The budget was P + E + P/2 itself: with the headroom's 5% its room was P + E + 2.5 MB,
  // and a b measured 17% over the probe was unloaded too, CI at 13:20 on 2026-12-07.)
  const probe = await serve(t);
  t.equal((await registerEcho(probe, 'probe')).status, 200, 'the probe registered');
  const pss = proportionalBytes((await residency(probe, 'probe')).workers[0]!.pid);
  await probe.close();
  const budgetMb = Math.round((1.5 * pss + WORKER_BASE_BYTES) / (1 - LOAD_HEADROOM) / 2 ** 20);
  t.ok(pss > 2 ** 20, `an echo worker holds ${(pss / 2 ** 20).toFixed(1)} MB PSS`);
  const server = await serve(t, { model_memory_budget_mb: String(budgetMb) });
  for (const name of ['a', 'b']) t.equal((await registerEcho(server, name)).status, 200, `${name} registered`);
  t.match(
    (await registerEcho(server, 'c')).message,
    /not loaded: the budget of [\d.]+ MB \(model_memory_budget_mb\) is full/,
    'c: registered unloaded, the budget full',
  );
  const statuses = [];
  for (const name of ['a', 'b', 'c']) statuses.push((await predict(server, name, 'hello')).status);
  t.same(
    [(await residency(server, 'a')).loaded, (await residency(server, 'b')).loaded, (await residency(server, 'c')).loaded],
    [false, true, true],
    "c's request, counted as the estimate, unloaded a, the least recently used",
  );
  t.equal(await metric(server, 'ts_model_unloads_total', 'a'), 1, 'the unload is counted');
  statuses.push((await predict(server, 'a', 'hello')).status);
  t.same(statuses, [200, 200, 200, 200], 'a, b, c, a again: each answered');
  t.same(
    [(await residency(server, 'a')).loaded, (await residency(server, 'b')).loaded, (await residency(server, 'c')).loaded],
    [true, true, true],
    "a's load counts a's measured size, not the estimate: the three fit (3P < P + E + P/2)",
  );
  await survived(t, server, { models: ['a', 'b', 'c'] });
});

function proportionalBytes(pid: number): number {
  return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'))?.[1] ?? 0) * 1024;
}

t.test('start-up models past max_loaded_models start unloaded, and their first request loads them', async (t) => {
  const server = await serve(t, { max_loaded_models: '2', load_models: 'a=echo.mar,b=echo.mar,c=echo.mar' });
  await waitFor(async () => (await residency(server, 'b')).workers.length === 1, 30_000, "b's worker");
  t.same(
    [(await residency(server, 'a')).loaded, (await residency(server, 'b')).loaded, (await residency(server, 'c')).loaded],
    [true, true, false],
    'two loaded, the third registered unloaded',
  );
  t.equal((await predict(server, 'c', 'hello')).status, 200, "c's first request is answered");
  t.equal((await residency(server, 'c')).loaded, true, 'c is loaded now');
  const customized = await fetch(`${server.urls.management}/models/a?customized=true`, { signal: AbortSignal.timeout(30_000) });
  t.equal(customized.status, 200, 'describe customized=true of a model unloaded for c loads it to ask its handler');
  await survived(t, server, { models: ['a', 'b', 'c'] });
});

t.test('with useJobTicket, an unloaded model is not refused: its request loads it', async (t) => {
  const server = await serve(t, { max_loaded_models: '1' }, 'useJobTicket: true\n');
  for (const name of ['a', 'b']) t.equal((await registerEcho(server, name)).status, 200, `${name} registered`);
  t.equal((await residency(server, 'b')).loaded, false, 'b is registered unloaded');
  t.equal((await predict(server, 'b', 'hello')).status, 200, "b's request is answered");
  t.same([(await residency(server, 'a')).loaded, (await residency(server, 'b')).loaded], [false, true], 'a made room for b');
  await survived(t, server, { models: ['a', 'b'] });
});

t.test('a stateful model is never unloaded: a model only its room could hold is answered 507', async (t) => {
  const server = await serve(t, { max_loaded_models: '1' }, 'sequenceBatching: true\n');
  for (const name of ['a', 'b']) t.equal((await registerEcho(server, name)).status, 200, `${name} registered`);
  const res = await predict(server, 'b', 'hello');
  t.equal(res.status, 507, "b's request: 507");
  t.match(
    (await errorBody(res)).message,
    /Model "b" cannot be loaded: .*1 models are loaded already \(max_loaded_models\), held by stateful models, which are never unloaded/,
  );
  t.same([(await residency(server, 'a')).loaded, (await residency(server, 'b')).loaded], [true, false], 'a, stateful, stays loaded');
  await survived(t, server, { models: ['a', 'b'] });
});

t.test('a model too large for the memory budget is answered 507, and the server stays up', async (t) => {
  const server = await serve(t, { model_memory_budget_mb: '1' });
  const res = await fetch(`${server.urls.management}/models?url=echo.mar&model_name=big&initial_workers=1&synchronous=true`, { method: 'POST' });
  t.equal(res.status, 507, 'register: 507');
  const body = await errorBody(res);
  t.equal(body.type, 'InternalServerException');
  t.match(body.message, /Model "big" cannot be loaded: it needs about [\d.]+ MB and the budget is 1\.0 MB \(model_memory_budget_mb\)/, 'the message says why');
  t.equal((await fetch(`${server.urls.management}/models/big`)).status, 404, 'and it is not registered');
  await survived(t, server);
});

t.test('a model scaled to 0 workers holds no process and does not count in max_loaded_models', async (t) => {
  const server = await serve(t, { max_loaded_models: '1' });
  t.equal((await registerEcho(server, 'a')).status, 200, 'a registered and loaded');
  const scaled = await fetch(`${server.urls.management}/models/a?min_worker=0&max_worker=0&synchronous=true`, { method: 'PUT' });
  await scaled.arrayBuffer();
  await waitFor(async () => (await residency(server, 'a')).workers.length === 0, 20_000, 'a at 0 workers');
  const b = await registerEcho(server, 'b');
  t.equal(b.status, 200, 'b registered');
  t.notMatch(b.message, /not loaded/, 'b loads at once: a at 0 workers does not count');
  t.equal((await residency(server, 'b')).workers.length, 1, 'b has its worker');
  t.equal((await residency(server, 'a')).loaded, true, 'a was not unloaded to make room: it stays registered and loaded, at 0 workers');
  const res = await predict(server, 'b', 'hello');
  t.equal(res.status, 200, 'b answers');
  await survived(t, server, { models: ['a', 'b'], sent: 1, answered: 1 });
});

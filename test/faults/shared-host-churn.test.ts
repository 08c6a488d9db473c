// Shared worker hosts under churn (issue 33, an outside review). A worker retired while its load
// waited its turn in a host must not leave that load pending: before the fix its load was sent
// anyway, never settled, and every later load in that host queued behind it until the startup
// timeout killed the host with all its models. The first test makes that race happen every time
// (a load that blocks its host while the worker behind it is retired; the churn below had come to
// lose it). Then clients predict over six lazy shared models while other loops unregister,
// register and scale them, with max_loaded_models evicting: every request answered, no worker
// outside a model. And models loaded and unloaded in turn (max_loaded_models) reuse the hosts:
// before, each load started a host process and each unload killed one.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { describe, predict, register, serve } from '../echo-model.js';
import { buildMar, FIXTURES, seededRandom, startTestServer, waitFor, type TestServer } from '../helpers.js';
import { survived } from './survival.js';

const LAZY = 'sharedWorker: true\nminWorkers: 0\nmaxWorkers: 1\nbatchSize: 4\nmaxBatchDelay: 5\nresponseTimeout: 5\n';
const MODELS = ['lz1', 'lz2', 'lz3', 'lz4', 'lz5', 'lz6'];
const RACE_MS = 6_000;
/** A request unanswered this long counts as lost: a load waits 120 s for its startup timeout. */
const ANSWER_MS = 20_000;

async function management(server: TestServer, method: string, path: string): Promise<void> {
  await fetch(`${server.urls.management}${path}`, { method, signal: AbortSignal.timeout(ANSWER_MS) })
    .then((res) => res.arrayBuffer())
    .catch(() => {});
}

/** One random change to a random model, as the reviewer's loops made. */
function churn(server: TestServer, random: () => number): Promise<void> {
  const model = MODELS[Math.floor(random() * MODELS.length)]!;
  const pick = Math.floor(random() * 5);
  if (pick === 0) return management(server, 'DELETE', `/models/${model}`);
  if (pick === 1) {
    const query = new URLSearchParams({
      url: 'echo.mar',
      model_name: model,
      initial_workers: String(Math.floor(random() * 2)),
      synchronous: String(random() < 0.5),
    });
    return management(server, 'POST', `/models?${query}`);
  }
  const scale = ['min_worker=0&max_worker=1', 'min_worker=2&max_worker=2', 'min_worker=1&synchronous=true'][pick - 2]!;
  return management(server, 'PUT', `/models/${model}?${scale}`);
}

/**
 * lifetime_handler.ts as `<name>.mar`, shared, its load blocking its host's event loop `blockMs`;
 * a load that never settles holds its host's turn 20 s, not 120 (the test's end waits for it).
 */
function buildLifetimeMar(store: string, name: string, blockMs: number): void {
  const configFile = join(store, '..', `${name}.yaml`);
  writeFileSync(configFile, `sharedWorker: true\nminWorkers: 0\nmaxWorkers: 1\nstartupTimeout: 20\nblockMs: ${blockMs}\n`);
  buildMar(store, { modelName: name, version: '1.0', handler: join(FIXTURES, 'lifetime_handler.ts'), configFile });
}

async function workerPid(server: TestServer, model: string): Promise<number> {
  let pid = -1;
  await waitFor(async () => (pid = (await describe(server, model)).workers[0]?.pid ?? -1) > 0, 10_000, `${model}'s worker started`);
  return pid;
}

t.test('a worker scaled down while its load waits its turn in a shared host: the host takes later loads at once', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      buildLifetimeMar(store, 'quick', 0);
      buildLifetimeMar(store, 'slow', 1000);
    },
    properties: { shared_worker_model_mb: '5' },
  });
  const modelLog = join(server.dir, 'logs', 'model_log.log');
  const blocking = (): boolean => existsSync(modelLog) && readFileSync(modelLog, 'utf8').includes('lifetime handler blocks its event loop');
  // Every core but one gets a host whose filler model served a batch lately (nudge, which loads
  // them): slow takes the last host a load may start, and late, sent to the running host with the
  // fewest recent batches (SharedHosts.leastFull), joins slow there.
  const fillers = Array.from({ length: availableParallelism() - 1 }, (_, i) => `filler${i}`);
  for (const name of fillers) await register(t, server, name, { url: 'quick.mar', initial_workers: 0 });
  const nudge = async (): Promise<void> => {
    for (const name of fillers) await (await predict(server, name, 'hi')).arrayBuffer();
  };
  await register(t, server, 'slow', { url: 'slow.mar', initial_workers: 0 });
  await register(t, server, 'late', { url: 'quick.mar', initial_workers: 0 });
  await nudge();
  await management(server, 'PUT', '/models/slow?min_worker=1&max_worker=1');
  const host = await workerPid(server, 'slow');
  await nudge();
  await management(server, 'PUT', '/models/late?min_worker=1&max_worker=1');
  t.equal(await workerPid(server, 'late'), host, "late's load waits its turn behind slow's in their host");
  await waitFor(blocking, 10_000, "slow's load blocking its host");
  // Retired while its load waits, its unload reaches the host while slow's load blocks it, and is
  // answered after slow's load is reported: before the fix late's load was sent then, never
  // settled, and held the host's turn until the startup timeout (120 s).
  await management(server, 'PUT', '/models/late?min_worker=0&max_worker=0&synchronous=true');
  await waitFor(async () => (await describe(server, 'slow')).workers[0]?.status === 'READY', 10_000, 'slow loaded');
  await nudge();
  await management(server, 'PUT', '/models/late?min_worker=1&max_worker=1');
  t.equal(await workerPid(server, 'late'), host, "late's next worker goes to the same host");
  const res = await fetch(`${server.urls.inference}/predictions/late`, { method: 'POST', body: 'hi', signal: AbortSignal.timeout(10_000) }).catch(
    (err: unknown) => err,
  );
  t.equal(res instanceof Response ? res.status : String(res), 200, 'late loads there and answers within 10 s');
  await survived(t, server, { models: ['slow', 'late', ...fillers] });
});

t.test('shared hosts under register/unregister/scale churn: every prediction answered, no worker stuck loading', async (t) => {
  const server = await serve(t, { max_loaded_models: '3', scale_down_delay_ms: '500', shared_worker_model_mb: '5' }, LAZY);
  for (const name of MODELS) await register(t, server, name, { initial_workers: 0 });
  const end = performance.now() + RACE_MS;
  const counts = { sent: 0, answered: 0 };
  const client = async (seed: number): Promise<void> => {
    const random = seededRandom(seed);
    for (let i = 0; i < 10_000 && performance.now() < end; i++) {
      const model = MODELS[Math.floor(random() * MODELS.length)]!;
      counts.sent++;
      const res = await fetch(`${server.urls.inference}/predictions/${model}`, { method: 'POST', body: 'hi', signal: AbortSignal.timeout(ANSWER_MS) }).catch(
        () => undefined,
      );
      if (res) {
        await res.arrayBuffer();
        counts.answered++;
      }
    }
  };
  const changer = async (seed: number): Promise<void> => {
    const random = seededRandom(seed);
    for (let i = 0; i < 10_000 && performance.now() < end; i++) {
      await churn(server, random);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await Promise.all([...Array.from({ length: 8 }, (_, i) => client(100 + i)), ...[1, 2, 3].map((s) => changer(s))]);
  t.ok(counts.sent > 0, `${counts.sent} predictions sent`);

  // Every model back, scaled to one worker: each loads and answers (none stuck behind a pending load).
  for (const name of MODELS) {
    await management(server, 'POST', `/models?url=echo.mar&model_name=${name}&initial_workers=0&synchronous=true`);
    await management(server, 'PUT', `/models/${name}?min_worker=0&max_worker=1`);
  }
  for (const name of MODELS) {
    const res = await fetch(`${server.urls.inference}/predictions/${name}`, { method: 'POST', body: 'after', signal: AbortSignal.timeout(ANSWER_MS) }).catch(
      () => undefined,
    );
    t.equal(res?.status, 200, `${name} answers after the churn`);
  }
  await waitFor(
    async () => {
      for (const name of MODELS) if ((await describe(server, name)).workers.some((w) => w.status !== 'READY')) return false;
      return true;
    },
    20_000,
    'no worker left loading',
  );
  await survived(t, server, { models: MODELS, sent: counts.sent, answered: counts.answered });
});

t.test('models loaded and unloaded in turn under max_loaded_models reuse the shared hosts', async (t) => {
  const log: string[] = [];
  const server = await serve(t, { max_loaded_models: '2', shared_worker_model_mb: '5' }, LAZY, (line) => log.push(line));
  const models = MODELS.slice(0, 4);
  for (const name of models) await register(t, server, name, { initial_workers: 0 });
  let sent = 0;
  let answered = 0;
  const client = async (offset: number): Promise<void> => {
    for (let i = 0; i < 25; i++) {
      sent++;
      const res = await fetch(`${server.urls.inference}/predictions/${models[(i + offset) % models.length]}`, {
        method: 'POST',
        body: 'hi',
        signal: AbortSignal.timeout(ANSWER_MS),
      }).catch(() => undefined);
      if (res) {
        await res.arrayBuffer();
        answered++;
      }
    }
  };
  await Promise.all([0, 1, 2, 3].map(client));
  const starts = log.filter((line) => /Shared worker host H-\d+ started/.test(line)).length;
  t.ok(starts <= availableParallelism() + 3, `${starts} host processes started for ${sent} requests over 4 models, 2 loaded at a time`);
  await survived(t, server, { models, sent, answered });
});

// Config snapshots under many changes and bad entries: a burst of registrations leaves a bounded
// number of snapshot files (not one per change, each holding every model), /ping is answered
// throughout, and a snapshot entry that cannot be restored neither fails the start nor is
// forgotten: it stays in every later snapshot until the operator unregisters it.
import { join } from 'node:path';
import t from 'tap';
import { buildMar, FIXTURES, startTestServer } from '../helpers.js';
import { newestModels, snapshotEntry, snapshotNames } from './snapshot-files.js';
import { survived } from './survival.js';

/** The snapshot folder of a test server started with snapshots on. */
function configDir(server: { dir: string }): string {
  return join(server.dir, 'logs', 'config');
}

t.test('100 registrations leave at most config_snapshot_max_files snapshots, the newest holding all, and /ping answers throughout', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    cli: { ncs: false },
  });
  const m = server.urls.management;
  // Five times config_snapshot_max_files (20): one file per change, or one per few, would show.
  const changes = 100;
  let next = 0;
  let registered = 0;
  const lane = async (): Promise<void> => {
    while (next < changes) {
      const name = `m${String(next++).padStart(3, '0')}`;
      const res = await fetch(`${m}/models?url=echo.mar&model_name=${name}&initial_workers=0`, { method: 'POST', signal: AbortSignal.timeout(30_000) });
      if (res.status === 200) registered++;
      await res.arrayBuffer();
    }
  };
  const pings: number[] = [];
  let slowestPingMs = 0;
  let bursting = true;
  const pinger = (async () => {
    for (let i = 0; bursting && i < 2000; i++) {
      const sentAt = performance.now();
      const res = await fetch(`${server.urls.inference}/ping`, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
      slowestPingMs = Math.max(slowestPingMs, performance.now() - sentAt);
      pings.push(res?.status ?? 0);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await Promise.all(Array.from({ length: 8 }, lane));
  bursting = false;
  await pinger;
  t.comment(`the slowest /ping of the burst took ${Math.round(slowestPingMs)} ms`);
  t.equal(registered, changes, 'every registration answered 200');
  t.ok(pings.length > 0 && pings.every((s) => s === 200), `/ping answered 200 all ${pings.length} times during the burst`);
  const files = snapshotNames(configDir(server));
  t.ok(files.length <= 20, `${files.length} snapshot files after ${changes} changes (at most 20)`);
  t.equal(Object.keys(newestModels(configDir(server))).length, changes, 'the newest snapshot holds every registered model');
  // survived() lists the first page of models: 100, all of them.
  await survived(t, server, { models: ['m000', 'm099'] });
});

t.test('a snapshot entry whose archive is missing: the start serves the rest and every later snapshot keeps it until it is unregistered', async (t) => {
  const log: string[] = [];
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    properties: {
      model_snapshot: JSON.stringify({ name: 'old.cfg', modelCount: 2, models: { echo: snapshotEntry('echo.mar'), gone: snapshotEntry('gone.mar') } }),
    },
    cli: { ncs: false },
    serverLog: (line) => log.push(line),
  });
  const m = server.urls.management;
  t.ok(
    log.some((l) => l.includes('FAILED to restore model gone, version 1.0')),
    'the missing archive is logged',
  );
  t.same(Object.keys(newestModels(configDir(server))).sort(), ['echo', 'gone'], 'the start-up snapshot keeps the model that was not restored');
  t.equal((await fetch(`${m}/models/echo?min_worker=1&synchronous=true`, { method: 'PUT' })).status, 200);
  t.same(Object.keys(newestModels(configDir(server))).sort(), ['echo', 'gone'], 'and so does the snapshot of a later change');
  t.match(newestModels(configDir(server)), { gone: { '1.0': { marName: 'gone.mar' } } }, 'with its settings');
  const forget = await fetch(`${m}/models/gone`, { method: 'DELETE' });
  t.equal(forget.status, 200, 'unregistering it forgets it');
  t.same(Object.keys(newestModels(configDir(server))), ['echo'], 'the next snapshot no longer has it');
  t.equal((await fetch(`${m}/models/gone`, { method: 'DELETE' })).status, 404, 'then it is unknown');
  await survived(t, server, { models: ['echo'] });
});

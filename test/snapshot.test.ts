// Config snapshots: every change writes one; a restart, even after kill -9, restores the newest,
// with its models, versions, default version and worker counts; --ncs neither writes nor reads.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseProperties } from '../dist/src/config/properties.js';
import { buildMnistMar, ROOT, startedPid, startTestServer, tempDir, waitFor, writeUserConfig } from './helpers.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');

type Describe = Array<{ modelVersion: string; minWorkers: number; maxWorkers: number; workers: Array<{ status: string }> }>;

/** Waits (10 s at most) until process `pid` has ended. */
function gone(pid: number, what: string): Promise<void> {
  const ended = (): boolean => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  return waitFor(ended, 10_000, `${what} gone`);
}

t.test('each change writes a snapshot holding every property and the registered models', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), cli: { ncs: false } });
  const dir = join(server.dir, 'logs', 'config');
  t.match(readdirSync(dir), [/^\d{17}-startup\.cfg$/], 'a startup snapshot');
  await fetch(`${server.urls.management}/models?url=mnist.mar&initial_workers=1`, { method: 'POST' });
  await fetch(`${server.urls.management}/models/mnist?min_worker=2&synchronous=true`, { method: 'PUT' });
  const files = readdirSync(dir).sort();
  t.equal(files.filter((f) => f.endsWith('-snapshot.cfg')).length, 2, 'one per change');
  const text = readFileSync(join(dir, files[files.length - 1]!), 'utf8');
  t.match(text, /^#Saving snapshot\n#/);
  const props = parseProperties(text, {});
  t.equal(props.get('enable_model_api'), 'true', 'the configuration is kept');
  t.match(JSON.parse(props.get('model_snapshot')!), {
    modelCount: 1,
    models: {
      mnist: {
        '1.0': {
          defaultVersion: true,
          marName: 'mnist.mar',
          minWorkers: 2,
          maxWorkers: 2,
          batchSize: 1,
          maxBatchDelay: 100,
          responseTimeout: 120,
          startupTimeout: 120,
          runtimeType: 'python',
        },
      },
    },
  });
});

t.test('after kill -9, tsserve --start restores models, versions, the default and worker counts', async (t) => {
  const dir = tempDir(t);
  const env = { ...process.env, TMPDIR: dir };
  const run = (args: string[]): { status: number | null; out: string } => {
    const r = spawnSync(process.execPath, [TSSERVE, ...args], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, out: r.stdout + r.stderr };
  };
  t.teardown(() => run(['--stop']));
  const store = join(dir, 'model-store');
  mkdirSync(store);
  buildMnistMar(store);
  buildMnistMar(store, 'mnist-v2', { version: '2.0' });
  const urls = await writeUserConfig(dir);
  const start = ['--start', '--model-store', 'model-store', '--enable-model-api', '--disable-token-auth'];
  t.equal(run(start).status, 0, 'started');

  const m = urls.management;
  t.equal((await fetch(`${m}/models?url=mnist.mar&initial_workers=1`, { method: 'POST' })).status, 200);
  t.equal((await fetch(`${m}/models?url=mnist-v2.mar&model_name=mnist&initial_workers=1`, { method: 'POST' })).status, 200);
  t.equal((await fetch(`${m}/models/mnist/1.0?min_worker=2&synchronous=true`, { method: 'PUT' })).status, 200);
  t.equal((await fetch(`${m}/models/mnist/2.0/set-default`, { method: 'PUT' })).status, 200);

  const pid = startedPid(dir);
  process.kill(pid, 'SIGKILL');
  await gone(pid, 'server');

  const restart = run(start);
  t.equal(restart.status, 0, restart.out);
  await waitFor(
    async () => {
      const res = await fetch(`${m}/models/mnist/all`);
      const all = (await res.json()) as Describe;
      return all.reduce((n, d) => n + d.workers.filter((w) => w.status === 'READY').length, 0) === 3;
    },
    30_000,
    'restored workers ready',
  );
  const all = (await (await fetch(`${m}/models/mnist/all`)).json()) as Describe;
  t.match(all, [
    { modelVersion: '1.0', minWorkers: 2, maxWorkers: 2 },
    { modelVersion: '2.0', minWorkers: 1, maxWorkers: 1 },
  ]);
  t.equal(((await (await fetch(`${m}/models/mnist`)).json()) as Describe)[0]!.modelVersion, '2.0', 'the default version is restored');
  t.equal(run(['--stop']).status, 0);

  const fresh = run([...start, '--ncs']);
  t.equal(fresh.status, 0, fresh.out);
  // The client's pooled keep-alive socket still points at the stopped server: allow a reconnect.
  const list = await fetch(`${m}/models`).catch(() => fetch(`${m}/models`));
  t.same(await list.json(), { models: [] }, '--ncs starts without the snapshot');
  run(['--stop']);
  t.ok(existsSync(join(dir, 'logs', 'config')), 'snapshots live in LOG_LOCATION/config');
});

t.test('a snapshot that cannot be written is logged: the server still starts, serves and stops its workers', async (t) => {
  // LOG_LOCATION/config is a file, so no snapshot can be written there, at start-up or at shutdown.
  const server = await startTestServer(t, {
    prepare: (store) => {
      mkdirSync(join(store, '..', 'logs'));
      writeFileSync(join(store, '..', 'logs', 'config'), 'not a folder');
      buildMnistMar(store);
    },
    properties: { load_models: 'mnist.mar' },
    cli: { ncs: false },
  });
  const digit = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));
  t.equal(await (await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: digit })).text(), '7');
  const [described] = (await (await fetch(`${server.urls.management}/models/mnist`)).json()) as Array<{ workers: Array<{ pid: number }> }>;
  const pid = described!.workers[0]!.pid;
  await server.close();
  await gone(pid, 'worker');
  t.pass('close() resolved after the shutdown snapshot failed, and the worker was stopped');
});

t.test(
  "a snapshot whose archive was replaced by junk: the model stays registered, described as FAILED, as TorchServe's test_snapshot expects; the others are served",
  async (t) => {
    const log: string[] = [];
    const entry = (marName: string): object => ({
      '1.0': { defaultVersion: true, marName, minWorkers: 1, maxWorkers: 1, batchSize: 1, maxBatchDelay: 100, responseTimeout: 120, runtimeType: 'python' },
    });
    const server = await startTestServer(t, {
      prepare: (store) => {
        buildMnistMar(store);
        writeFileSync(join(store, 'broken.mar'), 'junk data');
      },
      properties: {
        model_snapshot: JSON.stringify({ name: 'snapshot.cfg', modelCount: 2, models: { mnist: entry('mnist.mar'), broken: entry('broken.mar') } }),
      },
      serverLog: (line) => log.push(line),
      cli: { ncs: false },
    });
    const listed = async (): Promise<string[]> =>
      ((await (await fetch(`${server.urls.management}/models`)).json()) as { models: Array<{ modelName: string }> }).models.map((m) => m.modelName);
    t.same(await listed(), ['broken', 'mnist'], 'listed, as TorchServe lists it');
    const [described] = (await (await fetch(`${server.urls.management}/models/broken`)).json()) as Array<Record<string, unknown>>;
    t.match(described, { modelName: 'broken', modelVersion: '1.0', modelUrl: 'broken.mar', minWorkers: 1, status: 'FAILED', workers: [], serving: false });
    t.match(described?.error, /^could not be restored from the config snapshot: /, 'describe says why');
    t.match(await (await fetch(`${server.urls.management}/models/broken/all`)).json(), [{ modelVersion: '1.0', status: 'FAILED' }]);

    const predicted = await fetch(`${server.urls.inference}/predictions/broken`, { method: 'POST', body: 'x' });
    t.equal(predicted.status, 503, 'a prediction is answered 503');
    t.match(await predicted.json(), {
      code: 503,
      type: 'ServiceUnavailableException',
      message: /^Model "broken" version 1.0 could not be restored from the config snapshot: .*unregister it$/,
    });
    t.equal((await fetch(`${server.urls.management}/models/broken?min_worker=1`, { method: 'PUT' })).status, 503, 'and a scale');
    t.same(await (await fetch(`${server.urls.management}/v1/models/broken`)).json(), { name: 'broken', ready: false }, 'KServe: not ready');

    const seven = readFileSync(join(ROOT, 'examples', 'mnist', 'digits', '7_0.png'));
    t.equal(await (await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'PUT', body: seven })).text(), '7');
    t.ok(
      log.some((l) => l.includes('FAILED to restore model broken, version 1.0, from broken.mar')),
      'the failure is in the log, loudly',
    );
    t.ok(log.some((l) => l.includes('Restored 1 model versions from snapshot snapshot.cfg; 1 failed: broken 1.0')));
    const newest = (): Record<string, unknown> => {
      const dir = join(server.dir, 'logs', 'config');
      const files = readdirSync(dir).sort();
      return JSON.parse(parseProperties(readFileSync(join(dir, files[files.length - 1]!), 'utf8'), {}).get('model_snapshot')!).models;
    };
    t.match(newest(), { broken: { '1.0': { marName: 'broken.mar' } } }, 'the snapshots carry it, for the next start');

    const unregistered = await fetch(`${server.urls.management}/models/broken`, { method: 'DELETE' });
    t.same([unregistered.status, await unregistered.json()], [200, { status: 'Model "broken" unregistered' }]);
    t.same(await listed(), ['mnist'], 'unregistered, it is forgotten');
    t.equal((await fetch(`${server.urls.inference}/predictions/broken`, { method: 'POST', body: 'x' })).status, 404);
    t.notOk('broken' in newest(), 'and no longer in the snapshots');
  },
);

// A full disk costs lines of log and refused changes, never memory, a stop, or a model: with the
// log disk full under load the front end's memory stays near its normal size and SIGTERM still
// ends it within the drain time; models that could not be restored on a full disk come back once
// it is freed; a change that cannot be saved is answered with an error, leaving no temp file; and
// a registration the disk fills under, as late as its node_modules links, is the archive's 400.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { grpcClient, unaryCall } from '../grpc-client.js';
import { buildMar, errorBody, FIXTURES, ROOT, startTestServer, tempDir, waitFor, waitReady, writeUserConfig } from '../helpers.js';
import { childServer, smallDisk } from './disk.js';
import { keptAlive, post } from './kept-alive-post.js';
import { newestModels, snapshotEntry } from './snapshot-files.js';
import { survived } from './survival.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');

/** `tsserve --start --foreground` as a child process, its exit awaited by `exited`. */
function startChild(
  t: Parameters<typeof smallDisk>[0],
  dir: string,
  args: string[],
  env: Record<string, string>,
): { child: ChildProcess; exited: Promise<number | null>; warnings: string[] } {
  const child = spawn(process.execPath, [TSSERVE, '--start', '--foreground', '--disable-token-auth', ...args], {
    cwd: dir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  // The server log (stdout in the foreground): its warnings and errors, whatever else it says.
  const warnings: string[] = [];
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    warnings.push(...lines.filter((l) => /\[(WARN |ERROR)\]/.test(l)).map((l) => l.slice(0, 300)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    child.kill('SIGKILL');
    return exited;
  });
  return { child, exited, warnings };
}

function rssKb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

/** `count` predictions, `concurrency` at a time on kept-alive connections, within `budgetMs`: answers how many were answered (any status). */
async function load(url: string, body: string, count: number, concurrency: number, budgetMs: number): Promise<{ sent: number; answered: number }> {
  const deadline = Date.now() + budgetMs;
  const agent = keptAlive(concurrency);
  let sent = 0;
  let answered = 0;
  const lane = async (): Promise<void> => {
    while (sent < count && Date.now() < deadline) {
      sent++;
      if (await post(agent, url, body)) answered++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  agent.destroy();
  return { sent, answered };
}

t.test('with the log disk full under load, memory stays within 1.5x of normal and SIGTERM exits within the drain time', async (t) => {
  const dir = tempDir(t);
  const disk = smallDisk(t, 8 * 1024);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  buildMar(store, { modelName: 'chatty', version: '1.0', handler: join(FIXTURES, 'chatty_handler.ts') });
  const drainSeconds = 10;
  const urls = await writeUserConfig(dir, ['default_workers_per_model=2', `drain_timeout=${drainSeconds}`]);
  const { child, exited, warnings } = startChild(t, dir, ['--ncs', '--model-store', 'model-store', '--models', 'chatty=chatty.mar'], {
    LOG_LOCATION: disk.dir,
  });
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up');
  await waitReady(urls.management, 'chatty', 2);
  const predict = `${urls.inference}/predictions/chatty`;

  // Normal: the same load with a disk that takes every line.
  const warm = await load(predict, 'print:4096', 1000, 16, 15_000);
  t.equal(warm.answered, warm.sent, 'the warm-up load is answered');
  const normal = rssKb(child.pid!);

  disk.fill();
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssKb(child.pid!));
  }, 100);
  // 48 MB of log into a full disk, in lines of 48 KB (under the 64 KiB cut): before the bounded
  // queue (11e32fa) they took the front end to 1.8 times its normal RSS, as 3,000 lines of 16 KB
  // took it to 1.95 times; now ~1.25 times, as then.
  // 1,000 requests, within 60 s: 15 s held 533 of them on a machine at load 30 (2026-12-07).
  const full = await load(predict, 'print:49152', 1000, 16, 60_000);
  clearInterval(sampler);
  peak = Math.max(peak, rssKb(child.pid!));
  t.comment(`front end RSS: ${normal} kB normal, ${peak} kB at most with the log disk full (${full.sent} requests)`);
  t.ok(full.sent >= 1000, `a real load was sent (${full.sent})`);
  t.ok(peak <= normal * 1.5, `RSS ${peak} kB stays within 1.5x of ${normal} kB`);
  await survived(t, childServer(urls), { models: ['chatty'], sent: full.sent, answered: full.answered, serverPid: child.pid! });

  disk.free();
  await load(predict, 'print:10', 20, 1, 10_000);
  // A full disk can take a write now and then (a loaded CI run: a second spell, reported and
  // recovered again): each spell is said once as it begins and once as it ends, never per retry.
  const refusals = (): number => warnings.filter((l) => l.includes('log file unwritable') && l.includes('model_log.log')).length;
  const recoveries = (): number => warnings.filter((l) => /\d+ lines of \S+model_log\.log were dropped: the disk did not take them/.test(l)).length;
  await waitFor(() => recoveries() >= 1 && recoveries() === refusals(), 10_000, 'the count of dropped lines').catch(() => undefined);
  // What the log said of model_log.log, in the assertions' words: a CI run at 19:46 on 2026-12-07
  // (Node 24, quiet) timed out here and said nothing of why.
  const said = warnings.filter((l) => l.includes('model_log.log')).join(' | ');
  t.ok(recoveries() >= 1, `once the disk takes lines again, the log says how many it lost: ${said}`);
  // A retry every second over a spell of 10 s or more would say it a dozen times.
  t.ok(
    refusals() >= 1 && refusals() <= recoveries() + 1,
    `the refused writes were reported once a spell, not once per retry (${refusals()} begun, ${recoveries()} ended)`,
  );

  disk.fill();
  const stopping = Date.now();
  child.kill('SIGTERM');
  const timer = new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), (drainSeconds + 5) * 1000).unref());
  const code = await Promise.race([exited, timer]);
  t.equal(code, 0, `SIGTERM ended it within the drain time (${Date.now() - stopping} ms)`);
});

/** A snapshot file as tsserve writes them, with `models` (name -> marName) of 0 workers each. */
function writeSnapshot(configDir: string, properties: string[], models: string[]): void {
  const snapshot = {
    name: '20260101000000000-shutdown.cfg',
    modelCount: models.length,
    created: 0,
    models: Object.fromEntries(models.map((m) => [m, snapshotEntry(`${m}.mar`)])),
  };
  mkdirSync(configDir, { recursive: true });
  const escaped = JSON.stringify(snapshot).replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/=/g, '\\=');
  writeFileSync(join(configDir, '20260101000000000-shutdown.cfg'), ['#Saving snapshot', ...properties, `model_snapshot=${escaped}`, ''].join('\n'));
}

async function registeredModels(management: string): Promise<string[]> {
  const list = (await (await fetch(`${management}/models?limit=100`)).json()) as { models: Array<{ modelName: string }> };
  return list.models.map((m) => m.modelName).sort();
}

/** The listed models a start could not restore: kept, described as FAILED. */
async function failedModels(management: string): Promise<string[]> {
  const failed: string[] = [];
  for (const name of await registeredModels(management)) {
    const [described] = (await (await fetch(`${management}/models/${name}`)).json()) as Array<{ status?: string }>;
    if (described?.status === 'FAILED') failed.push(name);
  }
  return failed;
}

t.test('after a start on a nearly full disk and freeing it, every registered model comes back', async (t) => {
  const dir = tempDir(t);
  const disk = smallDisk(t, 4 * 1024);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  // Each archive unpacks to 256 KB more than the disk will have free.
  const ballast = join(dir, 'ballast.bin');
  writeFileSync(ballast, Buffer.alloc(256 * 1024, 7));
  const names = ['m01', 'm02', 'm03', 'm04', 'm05'];
  for (const name of names) buildMar(store, { modelName: name, version: '1.0', handler: join(FIXTURES, 'echo_handler.ts'), extraFiles: ballast });
  const logs = join(disk.dir, 'logs');
  const urls = await writeUserConfig(dir, []);
  const properties = readFileSync(join(dir, 'config.properties'), 'utf8').trim().split('\n');
  writeSnapshot(join(logs, 'config'), [...properties, 'enable_model_api=true', 'disable_token_authorization=true', `model_store=${store}`], names);
  const env = { LOG_LOCATION: logs, TMPDIR: disk.dir };

  disk.fill(96 * 1024);
  const first = startChild(t, dir, ['--model-store', store], env);
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up on the full disk');
  const failed = await failedModels(urls.management);
  t.ok(failed.length > 0, `some models could not be restored on the full disk (${failed.length} failed)`);
  t.same(await registeredModels(urls.management), names, 'and stay listed, described as FAILED, as TorchServe keeps them');
  await survived(t, childServer(urls), { serverPid: first.child.pid! });
  first.child.kill('SIGTERM');
  t.equal(await first.exited, 0, 'stopped');

  disk.free();
  const second = startChild(t, dir, ['--model-store', store], env);
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up on the freed disk');
  t.same(await registeredModels(urls.management), names, 'every model the snapshot held is registered again');
  t.same(await failedModels(urls.management), [], 'none failed');
  await survived(t, childServer(urls), { models: names, serverPid: second.child.pid! });
  second.child.kill('SIGTERM');
  t.equal(await second.exited, 0);
});

t.test('a change that cannot be saved on a full disk is answered with an error and leaves no temp file', async (t) => {
  const disk = smallDisk(t, 1024);
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    cli: { ncs: false },
    env: { LOG_LOCATION: disk.dir },
  });
  const m = server.urls.management;
  t.equal((await fetch(`${m}/models?url=echo.mar&initial_workers=1&synchronous=true`, { method: 'POST' })).status, 200, 'registered while the disk has room');
  await waitReady(m, 'echo');
  const configDir = join(disk.dir, 'config');
  const before = readdirSync(configDir).length;
  disk.fill();
  const scaled = await fetch(`${m}/models/echo?min_worker=2&max_worker=2&synchronous=true`, { method: 'PUT' });
  t.ok(scaled.status >= 500, `the change that could not be saved answers ${scaled.status}, not 200`);
  t.match(await errorBody(scaled), { code: scaled.status, type: /Exception$/, message: /snapshot/ });
  const left = readdirSync(configDir);
  t.same(
    left.filter((f) => f.endsWith('.tmp')),
    [],
    'no temp file is left',
  );
  t.ok(left.length <= before, 'no new (empty) snapshot either');
  const [described] = (await (await fetch(`${m}/models/echo`)).json()) as Array<{ minWorkers: number }>;
  t.equal(described!.minWorkers, 2, 'the change is in effect, as the answer says');
  disk.free();
  await waitFor(() => newestModels(configDir).echo?.['1.0']?.minWorkers === 2, 15_000, 'the unsaved change saved once the disk has room');
  t.pass('with room again, the change is saved without another one');
  t.equal((await fetch(`${m}/models/echo?min_worker=1&max_worker=1&synchronous=true`, { method: 'PUT' })).status, 200, 'and a change answers 200');
  await survived(t, server, { models: ['echo'] });
});

t.test('an archive that does not fit on the disk leaves the one it was to replace whole, and the server serves it', async (t) => {
  const dir = tempDir(t);
  const disk = smallDisk(t, 1024);
  // The archive to be replaced is built here (the cached build of the same inputs); the CLI's
  // run that fails is the subject.
  const mar = buildMar(disk.dir, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
  t.equal(mar, join(disk.dir, 'echo.mar'), 'echo.mar archived while the disk has room');
  const good = readFileSync(mar);
  // Random bytes: they do not compress, so the new archive is bigger than the room left.
  const ballast = join(dir, 'ballast.bin');
  writeFileSync(ballast, randomBytes(256 * 1024));
  disk.fill(64 * 1024);
  const failed = spawnSync(
    process.execPath,
    [
      join(ROOT, 'bin', 'tsserve-archiver.js'),
      '--model-name',
      'echo',
      '--version',
      '1.0',
      '--handler',
      join(FIXTURES, 'echo_handler.ts'),
      '--export-path',
      disk.dir,
      '--force',
      '--extra-files',
      ballast,
    ],
    { encoding: 'utf8' },
  );
  t.not(failed.status, 0, 'the archiver fails');
  t.match(failed.stderr, /echo\.mar could not be written: ENOSPC: no space left on device/, 'saying which file the full disk refused');
  t.notMatch(failed.stderr, /\n\s+at /, 'in a line, not a stack trace');
  t.ok(readFileSync(mar).equals(good), 'the archive it was to replace is whole, byte for byte');
  t.same(
    readdirSync(disk.dir).filter((f) => f !== 'filler' && f !== 'echo.mar'),
    [],
    'and nothing half-written is left beside it',
  );
  disk.free();
  const server = await startTestServer(t, { properties: { model_store: disk.dir } });
  const m = server.urls.management;
  t.equal((await fetch(`${m}/models?url=echo.mar&initial_workers=1&synchronous=true`, { method: 'POST' })).status, 200, 'the kept archive registers');
  await survived(t, server, { models: ['echo'] });
});

t.test('a start whose PID file the full disk refuses ends in one line, leaving no server running', async (t) => {
  const dir = tempDir(t);
  const disk = smallDisk(t, 256);
  const urls = await writeUserConfig(dir, ['disable_token_authorization=true']);
  disk.fill();
  const started = spawnSync(process.execPath, [TSSERVE, '--start', '--ncs', '--model-store', dir], {
    cwd: dir,
    env: { ...process.env, TMPDIR: disk.dir, LOG_LOCATION: join(dir, 'logs') },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.not(started.status, 0, 'the start fails');
  t.match(started.stderr, /tsserve did not start: its PID file .* could not be written: ENOSPC/, 'saying why');
  t.notMatch(started.stderr, /\n\s+at /, 'in a line, not a stack trace');
  t.same(
    readdirSync(disk.dir).filter((f) => f !== 'filler'),
    [],
    'nothing half-written left',
  );
  const answered = await fetch(`${urls.inference}/ping`).then(
    () => true,
    () => false,
  );
  t.notOk(answered, 'and no server it launched runs on');
});

/** Files and folders under `path`, itself included, leaving out `skip`'s subtree. */
function inodesUnder(path: string, skip: string): number {
  let count = 1;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.name === skip) continue;
    count += entry.isDirectory() ? inodesUnder(join(path, entry.name), skip) : 1;
  }
  return count;
}

t.test("a disk that fills while a model's node_modules links are made: a 400 naming the disk, over REST and gRPC, and nothing left of the model", async (t) => {
  const dir = tempDir(t);
  const disk = smallDisk(t, 16 * 1024, 4096);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
  const urls = await writeUserConfig(dir, ['enable_model_api=true', 'default_workers_per_model=1']);
  const grpcPort = /^grpc_management_port=(\d+)$/m.exec(readFileSync(join(dir, 'config.properties'), 'utf8'))![1]!;
  // The extracted models' folder (TMPDIR/tsserve-models) is on the small disk; the logs are not.
  const { child } = startChild(t, dir, ['--ncs', '--model-store', store, '--models', 'echo=echo.mar'], { LOG_LOCATION: join(dir, 'logs'), TMPDIR: disk.dir });
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up');
  await waitReady(urls.management, 'echo');
  const models = join(disk.dir, 'tsserve-models');
  const [echoDir] = readdirSync(models);
  // Room for the archive's files and the node_modules folder, none for its first link.
  const linkFails = inodesUnder(join(models, echoDir!), 'node_modules') + 1;

  disk.fillInodes(linkFails);
  const res = await fetch(`${urls.management}/models?url=echo.mar&model_name=linked&initial_workers=1&synchronous=true`, { method: 'POST' });
  const body = await errorBody(res);
  t.equal(res.status, 400, `REST answers 400, as a full disk at extraction does: ${JSON.stringify(body)}`);
  t.match(body, {
    code: 400,
    type: 'InvalidModelException',
    message: /^The disk of \S+tsserve-models is full: the model's node_modules links could not be made \(ENOSPC/,
  });
  t.same(readdirSync(models), [echoDir], 'its half-made folder is removed');

  const management = grpcClient(t, `127.0.0.1:${grpcPort}`, 'management.proto', 'org.pytorch.serve.grpc.management.ManagementAPIsService');
  const called = await unaryCall(management, 'RegisterModel', { url: 'echo.mar', model_name: 'linked_grpc', initial_workers: 1, synchronous: true });
  t.equal(called.code, grpc.status.INVALID_ARGUMENT, `gRPC answers INVALID_ARGUMENT (${called.details})`);
  t.match(called.details, /^The disk of \S+tsserve-models is full/);
  t.same(readdirSync(models), [echoDir], 'and leaves nothing either');

  const echo = await fetch(`${urls.inference}/predictions/echo`, { method: 'POST', body: 'still here' });
  t.equal(echo.status, 200, 'the other model answers');
  disk.free();
  t.equal(
    (await fetch(`${urls.management}/models?url=echo.mar&model_name=linked&initial_workers=1&synchronous=true`, { method: 'POST' })).status,
    200,
    'with room again, the same registration succeeds',
  );
  await survived(t, childServer(urls), { models: ['echo', 'linked'], sent: 1, answered: 1, serverPid: child.pid! });
});

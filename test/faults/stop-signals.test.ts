// A stop asked for at any moment of tsserve's start ends it promptly and cleanly: SIGTERM to
// `tsserve --start --foreground` right after it read its configuration, while a start-up archive
// downloads, while the workers load their model, or while the front end warms up, makes it exit
// 0 within a few seconds, with no process of it left, no PID file, its ports free. It used to be
// lost until the start was over: outside a container the default action killed the process
// (exit by signal, its workers left to die on their own); as a container's PID 1 the signal was
// ignored and the pod runtime killed it at the end of its grace period. `tsserve --start` (the
// launcher) interrupted while it waits stops the server it launched, and `tsserve --stop` stops a
// server that is still starting.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type ServerResponse } from 'node:http';
import { connect, createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, FIXTURES, ROOT, tempDir, tsserve, waitFor, waitReady, writeUserConfig } from '../helpers.js';
import { workerPids } from './survival.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');
/** "Promptly": a correctness bound, far above what a stop takes, far below a pod's grace period. */
const STOP_BOUND_MS = 10_000;
/** How long a test waits for an exit before it kills the process and calls the stop lost. */
const EXIT_WAIT_MS = 30_000;

interface Started {
  readonly dir: string;
  readonly store: string;
  readonly urls: { inference: string; management: string; metrics: string };
  readonly child: ChildProcess;
  readonly output: () => string;
}

interface StoreOptions {
  readonly loadMs: number;
  /**
   * How long the warm-up sample takes to answer; without it the archive names no warmupFile: a
   * server that gets through its start would warm its front end (front_end_warmup_ms, 2 s of 32
   * connections against itself) and its workers (up to 1 s of batches) for a test that is not
   * about the warm-up.
   */
  readonly warmUpMs?: number;
  readonly extra?: string[];
  /** Workers of `slow`: one unless the test is about several (each is a process to start and stop). */
  readonly workers?: number;
}

/**
 * A model store with `slow.mar` (test/fixtures/lifetime_handler.ts, `workers` workers that take
 * `loadMs` to load, a warm-up sample that takes `warmUpMs` to answer when given), and config.properties.
 */
async function storeAndConfig(t: Test, opts: StoreOptions): Promise<Omit<Started, 'child' | 'output'>> {
  const dir = tempDir(t, 'tsserve-stop-');
  // A server whose stop was lost (the old code's detached one) is not left running after the test.
  t.teardown(() => {
    for (const pid of pidsOf(dir)) process.kill(Number(pid), 'SIGKILL');
  });
  const store = join(dir, 'model-store');
  mkdirSync(store);
  const configFile = join(dir, 'model-config.yaml');
  const workers = opts.workers ?? 1;
  const sample = join(dir, 'warm-up.txt');
  const warmsUp = opts.warmUpMs !== undefined;
  if (warmsUp) writeFileSync(sample, `sleep:${opts.warmUpMs}`);
  writeFileSync(configFile, `minWorkers: ${workers}\nmaxWorkers: ${workers}\nloadMs: ${opts.loadMs}\n${warmsUp ? 'warmupFile: warm-up.txt\n' : ''}`);
  buildMar(store, {
    modelName: 'slow',
    version: '1.0',
    handler: join(FIXTURES, 'lifetime_handler.ts'),
    configFile,
    ...(warmsUp ? { extraFiles: sample } : {}),
  });
  const urls = await writeUserConfig(dir, opts.extra);
  return { dir, store, urls };
}

/** `tsserve <args>` as a child process run from `dir`, its TMPDIR (PID file, extracted models) there too. */
function launch(t: Test, dir: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [TSSERVE, ...args], { cwd: dir, env: { ...process.env, TMPDIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  t.teardown(() => child.kill('SIGKILL'));
  return { child, output: () => output };
}

async function startForeground(t: Test, models: string, opts: StoreOptions): Promise<Started> {
  const prepared = await storeAndConfig(t, opts);
  const started = launch(t, prepared.dir, ['--start', '--foreground', '--ncs', '--model-store', 'model-store', '--models', models, '--disable-token-auth']);
  return { ...prepared, ...started };
}

/** How `child` ended, or 'still running' once EXIT_WAIT_MS passed (then it is killed). */
function ending(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'still running'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('still running');
    }, EXIT_WAIT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** Live processes whose environment or command line names `dir`: the test's server and all it started. */
function pidsOf(dir: string): string[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((pid) => {
      const status = readProc(pid, 'status');
      if (status === '' || /^State:\s+Z/m.test(status)) return false;
      return readProc(pid, 'environ').split('\0').includes(`TMPDIR=${dir}`) || readProc(pid, 'cmdline').includes(dir);
    });
}

/** pidsOf(dir), each with its command line, for the assertion's diff. */
function processesOf(dir: string): string[] {
  return pidsOf(dir).map((pid) => `${pid} ${readProc(pid, 'cmdline').replaceAll('\0', ' ')}`);
}

function readProc(pid: string, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return '';
  }
}

function pidFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.startsWith('.tsserve-') && f.endsWith('.pid'));
}

function canListen(url: string): Promise<boolean> {
  const port = Number(new URL(url).port);
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** SIGTERM to the server now: it exits 0 within STOP_BOUND_MS, and nothing of it is left. */
async function stopsCleanly(t: Test, server: Started, what: string): Promise<void> {
  const exited = ending(server.child);
  const signalled = performance.now();
  server.child.kill('SIGTERM');
  const end = await exited;
  const tookMs = Math.round(performance.now() - signalled);
  t.same(end, { code: 0, signal: null }, `SIGTERM ${what}: exit 0 (${tookMs} ms)`);
  if (end === 'still running' || end.code !== 0) t.comment(server.output());
  t.ok(tookMs < STOP_BOUND_MS, `within ${STOP_BOUND_MS / 1000} s`);
  t.same(processesOf(server.dir), [], 'no process of it is left (workers included)');
  t.same(pidFiles(server.dir), [], 'no PID file is left');
  for (const url of Object.values(server.urls)) t.ok(await canListen(url), `${url} is free again`);
}

t.test('SIGTERM right after the configuration is read, before any listener', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const server = await startForeground(t, 'slow=slow.mar', { loadMs: 3000 });
  await waitFor(() => pidFiles(server.dir).length === 1, 20_000, 'the PID file');
  await stopsCleanly(t, server, 'after the PID file');
});

t.test(
  'SIGTERM while a start-up archive downloads: the download ends, nothing of it is left in the store',
  { skip: process.platform !== 'linux' && 'reads /proc' },
  async (t) => {
    // A file server that takes the request and never answers: the download waits for download_timeout.
    let asked = false;
    const held: ServerResponse[] = [];
    const files = createHttpServer((_req, res) => {
      asked = true;
      held.push(res);
    });
    await new Promise<void>((resolve) => files.listen(0, '127.0.0.1', resolve));
    t.teardown(() => {
      for (const res of held) res.destroy();
      files.close();
    });
    const port = (files.address() as { port: number }).port;
    const server = await startForeground(t, `held=http://127.0.0.1:${port}/held.mar`, {
      loadMs: 0,
      extra: ['allowed_urls=http://127.0.0.1:[0-9]+/.*', 'download_timeout=120'],
    });
    await waitFor(() => asked, 20_000, 'the download to begin');
    await stopsCleanly(t, server, 'during the download');
    t.same(
      readdirSync(server.store).filter((f) => f !== 'slow.mar'),
      [],
      'no archive and no partial download in the store',
    );
  },
);

t.test('SIGTERM while the workers load the model', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const server = await startForeground(t, 'slow=slow.mar', { loadMs: 20_000, workers: 2 });
  await waitFor(() => workerPids(server.child.pid!).length === 2, 20_000, 'two workers loading');
  await stopsCleanly(t, server, 'while two workers load for 20 s');
});

t.test('SIGTERM while the front end warms up', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  // The warm-up's sample takes 5 s to answer: the start is not over until it is.
  const server = await startForeground(t, 'slow=slow.mar', { loadMs: 0, warmUpMs: 5000 });
  await waitFor(async () => (await fetch(`${server.urls.inference}/ping`).catch(() => undefined))?.status === 200, 20_000, 'the listeners');
  await waitReady(server.urls.management, 'slow');
  t.notMatch(server.output(), /Model server started/, 'the start is not over: the warm-up runs');
  await stopsCleanly(t, server, 'during the warm-up');
});

t.test('SIGTERM to `tsserve --start` while it waits: the server it launched stops too', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const prepared = await storeAndConfig(t, { loadMs: 20_000 });
  const launcher = launch(t, prepared.dir, ['--start', '--ncs', '--model-store', 'model-store', '--models', 'slow=slow.mar', '--disable-token-auth']);
  await waitFor(() => workerPids(0).some((pid) => readProc(String(pid), 'environ').includes(`TMPDIR=${prepared.dir}`)), 20_000, 'a worker loading');
  const exited = ending(launcher.child);
  launcher.child.kill('SIGTERM');
  const end = await exited;
  t.same(end, { code: 143, signal: null }, 'the launcher exits 143, as a shell says of SIGTERM, once the server stopped');
  t.match(launcher.output(), /interrupted: the server it launched stopped before it served/);
  await waitFor(() => processesOf(prepared.dir).length === 0, STOP_BOUND_MS, 'the server and its workers gone');
  t.same(pidFiles(prepared.dir), [], 'no PID file is left');
  for (const url of Object.values(prepared.urls)) t.ok(await canListen(url), `${url} is free again`);
});

t.test('`tsserve --stop` while a server started with --start is still starting', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const prepared = await storeAndConfig(t, { loadMs: 20_000 });
  const launcher = launch(t, prepared.dir, ['--start', '--ncs', '--model-store', 'model-store', '--models', 'slow=slow.mar', '--disable-token-auth']);
  const exited = ending(launcher.child);
  await waitFor(() => pidFiles(prepared.dir).length === 1, 20_000, 'the PID file');
  const stop = tsserve(['--stop'], prepared.dir, { TMPDIR: prepared.dir });
  t.match(stop.out, /tsserve has stopped/, '--stop finds it and stops it');
  t.same(await exited, { code: 1, signal: null }, 'the launcher says the start did not happen (exit 1)');
  t.match(launcher.output(), /stopped before it served: a stop was asked for during its start/);
  t.same(processesOf(prepared.dir), [], 'no process of it is left');
  t.notOk(existsSync(join(prepared.dir, pidFiles(prepared.dir)[0] ?? 'none')), 'no PID file is left');
});

t.test(
  'a SIGTERM the moment the PID file names the server, before its first module catches signals, is a stop during its start',
  { skip: process.platform !== 'linux' && 'reads /proc' },
  async (t) => {
    const prepared = await storeAndConfig(t, { loadMs: 20_000 });
    const launcher = launch(t, prepared.dir, ['--start', '--ncs', '--model-store', 'model-store', '--models', 'slow=slow.mar', '--disable-token-auth']);
    const exited = ending(launcher.child);
    // Read every millisecond: the window between the fork and the server's handler is ~30 ms.
    const begun = Date.now();
    let file: string | undefined;
    while (!(file = pidFiles(prepared.dir)[0]) && Date.now() - begun < 20_000) await new Promise((r) => setTimeout(r, 1));
    const pid = Number(readFileSync(join(prepared.dir, file!), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGTERM');
    t.same(await exited, { code: 1, signal: null }, 'the launcher exits 1');
    t.match(
      launcher.output(),
      /stopped before it served: a stop was asked for during its start/,
      'and says a stop came during the start, not that the start failed',
    );
    t.same(processesOf(prepared.dir), [], 'no process of it is left');
    t.same(pidFiles(prepared.dir), [], 'no PID file is left');
  },
);

/** The gRPC inference port `writeUserConfig` chose for the server in `dir`. */
function grpcInferencePort(dir: string): number {
  return Number(/^grpc_inference_port=(\d+)$/m.exec(readFileSync(join(dir, 'config.properties'), 'utf8'))![1]);
}

t.test(
  'SIGTERM with clients that never finish: the stop ends at drain_timeout, what is unanswered gets a 503, exit 0',
  { skip: process.platform !== 'linux' && 'reads /proc' },
  async (t) => {
    const server = await startForeground(t, 'slow=slow.mar', { loadMs: 0, extra: ['drain_timeout=2'] });
    await waitFor(() => /Model server started/.test(server.output()), 20_000, 'the start');
    const { hostname, port } = new URL(server.urls.inference);
    // An upload that stalls after its first bytes: once held the stop past drain_timeout, to exit 1.
    const stalled = new Promise<{ status?: number; body: string }>((resolve) => {
      const req = httpRequest({ hostname, port, path: '/predictions/slow', method: 'POST', headers: { 'content-length': 1000 } }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode, body }));
        res.on('error', () => resolve({ status: res.statusCode, body }));
      });
      req.on('error', (err) => resolve({ body: String(err) }));
      req.write('ten bytes.');
    });
    // A header sent in half, and a gRPC connection that says nothing.
    const halfHeader = connect(Number(port), hostname, () => halfHeader.write('GET /ping HTTP/1.1\r\nHost: x\r\n'));
    const silentGrpc = connect(grpcInferencePort(server.dir), '127.0.0.1');
    for (const socket of [halfHeader, silentGrpc]) socket.on('error', () => {});
    t.teardown(() => {
      halfHeader.destroy();
      silentGrpc.destroy();
    });
    await new Promise((r) => setTimeout(r, 300));
    await stopsCleanly(t, server, 'with a stalled upload, a half header and a silent gRPC connection');
    const answer = await stalled;
    t.equal(answer.status, 503, 'the stalled upload is answered 503');
    t.match(JSON.parse(answer.body || '{}'), { code: 503, type: 'ServiceUnavailableException', message: /tsserve is stopping/ });
  },
);

t.test(
  'A registration whose archive is still unpacking when SIGTERM comes is answered 503, not 200, and nothing of it is left',
  { skip: process.platform !== 'linux' && 'reads /proc' },
  async (t) => {
    const server = await startForeground(t, 'slow=slow.mar', { loadMs: 0, extra: ['enable_model_api=true', 'drain_timeout=20'] });
    // 40 MB that does not compress: unpacking it takes a while, and the stop comes meanwhile. Stored,
    // not deflated: deflate keeps random bytes as stored blocks anyway, so the unpack is the same
    // copy and checksum, and the archive's build spends 0.8 CPU-s less.
    const bulk = join(server.dir, 'bulk.bin');
    writeFileSync(bulk, randomBytes(40 * 1024 * 1024));
    buildMar(server.store, { modelName: 'bulky', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts'), extraFiles: bulk, archiveFormat: 'zip-store' });
    await waitFor(() => /Model server started/.test(server.output()), 20_000, 'the start');
    const registering = fetch(`${server.urls.management}/models?url=bulky.mar&initial_workers=1&synchronous=true`, { method: 'POST' }).then(
      async (r) => ({ status: r.status, body: await r.text() }),
      (err: Error) => ({ status: 0, body: String(err) }),
    );
    // Each model unpacks into a folder of its own there: slow's is one, bulky's the next.
    const extracting = join(server.dir, 'tsserve-models');
    await waitFor(() => readdirSync(extracting).length === 2, 20_000, 'the unpacking to begin');
    await stopsCleanly(t, server, 'while a registration unpacks its archive');
    const answer = await registering;
    t.equal(answer.status, 503, `the registration is answered 503: ${answer.body}`);
    t.match(JSON.parse(answer.body || '{}'), { type: 'ServiceUnavailableException', message: /tsserve is stopping/ });
    t.same(readdirSync(extracting), [], "its unpacked files are gone (and slow's)");
  },
);

t.test('SIGHUP (a closed terminal) stops a serving server as SIGTERM does: what it accepted is answered, exit 0', async (t) => {
  const server = await startForeground(t, 'slow=slow.mar', { loadMs: 0 });
  await waitFor(() => /Model server started/.test(server.output()), 20_000, 'the start');
  const inFlight = fetch(`${server.urls.inference}/predictions/slow`, { method: 'POST', body: 'sleep:1000' }).then(
    (r) => r.status,
    (err: Error) => String(err),
  );
  await new Promise((r) => setTimeout(r, 300));
  const exited = ending(server.child);
  server.child.kill('SIGHUP');
  t.equal(await inFlight, 200, 'the prediction in flight is answered');
  t.same(await exited, { code: 0, signal: null }, 'then the server exits 0');
});

t.test('`tsserve --stop` keeps key_file.json while the server still answers what it accepted', async (t) => {
  const prepared = await storeAndConfig(t, { loadMs: 0 });
  const launcher = launch(t, prepared.dir, ['--start', '--ncs', '--model-store', 'model-store', '--models', 'slow=slow.mar']);
  t.same(await ending(launcher.child), { code: 0, signal: null }, 'started with token authorization');
  const keyFile = join(prepared.dir, 'key_file.json');
  const keys = JSON.parse(readFileSync(keyFile, 'utf8')) as { inference: { key: string } };
  const pid = Number(readFileSync(join(prepared.dir, pidFiles(prepared.dir)[0]!), 'utf8').split('\n')[0]);
  const inFlight = fetch(`${prepared.urls.inference}/predictions/slow`, {
    method: 'POST',
    body: 'sleep:2000',
    headers: { authorization: `Bearer ${keys.inference.key}` },
  }).then((r) => r.status);
  await new Promise((r) => setTimeout(r, 300));
  const stopping = spawn(process.execPath, [TSSERVE, '--stop'], {
    cwd: prepared.dir,
    env: { ...process.env, TMPDIR: prepared.dir },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let said = '';
  stopping.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()));
  const stopped = ending(stopping);
  // The stop is under way once the listeners take no new connection; the prediction holds it open.
  await waitFor(async () => (await fetch(`${prepared.urls.inference}/ping`).catch(() => undefined)) === undefined, 10_000, 'the drain');
  t.ok(readProc(String(pid), 'status') !== '', 'the server still drains');
  t.ok(existsSync(keyFile), 'its key file is still there meanwhile');
  t.equal(await inFlight, 200, 'the prediction in flight is answered');
  t.same(await stopped, { code: 0, signal: null });
  t.match(said, /tsserve has stopped/);
  t.notOk(existsSync(keyFile), 'once it has stopped, the key file is gone');
});

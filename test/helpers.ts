/**
 * Test helpers: a real tsserve on 127.0.0.1 with ports chosen by the OS, a model store of real
 * archives built by the real archiver, and fetch.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import tap, { type Test } from 'tap';
import { createArchive, type ArchiveOptions } from '../dist/src/archive/write.js';
import { cachedArchive } from './archive-cache.js';
import { loadServerConfig } from '../dist/src/config/server-config.js';
import { createLoggers } from '../dist/src/log/loggers.js';
import { startServer, type RunningServer } from '../dist/src/server.js';
import { WORKER_STATE_WARNING } from '../dist/src/workers/worker-state.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const MNIST_DIR = join(ROOT, 'examples', 'mnist');
export const FIXTURES = join(ROOT, 'test', 'fixtures');
export const NST_DIR = join(ROOT, 'examples', 'nst');

/**
 * The end-to-end tests import the server from dist/: after an edit of src/, a file run alone
 * (`npx tap test/x.test.ts`) would test the old build without a word. It stops here instead;
 * `npm run test:one -- test/x.test.ts` builds, then runs it.
 */
function refuseStaleBuild(): void {
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((latest, entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return Math.max(latest, newest(path));
      return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? Math.max(latest, statSync(path).mtimeMs) : latest;
    }, 0);
  // The build is incremental: tsc rewrites only what changed, and its state file at every build
  // that changed anything (`npm run build` touches it, for a source saved unchanged).
  const builtAt = Math.max(...['.tsbuildinfo', 'src/index.js'].map((f) => join(ROOT, 'dist', f)).map((f) => (existsSync(f) ? statSync(f).mtimeMs : 0)));
  if (Math.max(newest(join(ROOT, 'src')), newest(join(ROOT, 'handlers'))) > builtAt) {
    throw new Error('dist/ is older than src/: run `npm run build` first, or `npm run test:one -- <file>`, which builds');
  }
}
refuseStaleBuild();

export interface TestServer extends RunningServer {
  readonly store: string;
  readonly dir: string;
}

/** A temporary folder removed when the test ends. */
export function tempDir(t: Test, prefix = 'tsserve-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Builds an archive into `store` with the real archiver, or copies the one it built from the same inputs before (archive-cache.ts). */
export function buildMar(store: string, opts: Omit<ArchiveOptions, 'exportPath'>): string {
  const options = { ...opts, exportPath: store, force: true };
  return cachedArchive(options, () => createArchive(options));
}

/** test/fixtures/colour_classifier.onnx (logits: the image's mean colour) with image_classifier, as colours.mar. */
export function buildColoursMar(store: string): string {
  return buildMar(store, { modelName: 'colours', version: '1.0', handler: 'image_classifier', serializedFile: join(FIXTURES, 'colour_classifier.onnx') });
}

/** colours.mar's model as labelled.mar, its classes named by an index_to_name.json of `labels`. */
export function buildLabelledColoursMar(store: string, labels: Record<number, string | string[]>): string {
  const file = join(store, '..', 'index_to_name.json');
  writeFileSync(file, JSON.stringify(labels));
  return buildMar(store, {
    modelName: 'labelled',
    version: '1.0',
    handler: 'image_classifier',
    serializedFile: join(FIXTURES, 'colour_classifier.onnx'),
    extraFiles: file,
  });
}

/** examples/nst as nst.mar, with its feature model, optimizer and styles. */
export function buildNstMar(store: string): string {
  return buildMar(store, {
    modelName: 'nst',
    version: '1.0',
    handler: join(NST_DIR, 'nst_handler.ts'),
    serializedFile: join(NST_DIR, 'step.onnx'),
    extraFiles: [join(NST_DIR, 'features.onnx'), join(NST_DIR, 'optimizer.ts'), join(NST_DIR, 'styles')].join(','),
  });
}

/** test/fixtures/breaking_handler.ts as breaking.mar (version 1.0), its marker file `marker`, and `yaml` more of its model-config.yaml. */
export function buildBreakingMar(store: string, marker: string, yaml = ''): string {
  const configFile = join(store, '..', 'breaking.yaml');
  writeFileSync(configFile, `marker: ${JSON.stringify(marker)}\n${yaml}`);
  return buildMar(store, { modelName: 'breaking', version: '1.0', handler: join(FIXTURES, 'breaking_handler.ts'), configFile });
}

export function buildMnistMar(store: string, name = 'mnist', extra: Partial<ArchiveOptions> = {}): string {
  return buildMar(store, {
    modelName: name,
    version: '1.0',
    serializedFile: join(MNIST_DIR, 'mnist.onnx'),
    handler: join(MNIST_DIR, 'mnist_handler.ts'),
    ...extra,
  });
}

/**
 * Starts a server whose three listeners take free ports, with `properties` added to its
 * config.properties; it is closed when the test ends.
 */
export async function startTestServer(
  t: Test,
  opts: {
    properties?: Record<string, string>;
    prepare?: (store: string) => void;
    cli?: Parameters<typeof loadServerConfig>[0];
    /** Environment variables the server's configuration reads. */
    env?: Record<string, string>;
    /** Receives the server log's lines (warnings and up, or from `level`); without it the log is silent. */
    serverLog?: (line: string) => void;
    level?: 'info' | 'warn';
  } = {},
): Promise<TestServer> {
  const dir = tempDir(t);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  opts.prepare?.(store);
  const props: Record<string, string> = {
    inference_address: 'http://127.0.0.1:0',
    management_address: 'http://127.0.0.1:0',
    metrics_address: 'http://127.0.0.1:0',
    grpc_inference_port: '0',
    grpc_management_port: '0',
    model_store: store,
    disable_token_authorization: 'true',
    enable_model_api: 'true',
    default_workers_per_model: '1',
    // The tests' clients (fetch) keep their connections alive: a stop would keep them 200 ms for a
    // request on its way, every test server's teardown with it. test/faults/keep-alive-stop tests that.
    stop_idle_grace_ms: '0',
    ...opts.properties,
  };
  const configFile = join(dir, 'config.properties');
  writeFileSync(
    configFile,
    Object.entries(props)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n') + '\n',
  );
  const config = loadServerConfig({ tsConfig: configFile, ncs: true, ...opts.cli }, { LOG_LOCATION: join(dir, 'logs'), ...opts.env }, dir);
  const log = opts.serverLog;
  const loggers = createLoggers(config.logLocation, {
    metricsLocation: config.metricsLocation,
    format: config.logFormat,
    ...(log ? { level: opts.level ?? 'warn', destination: { write: log } } : { level: 'silent' }),
  });
  // A worker state move that is neither allowed nor a known race is a bug: loud here, not ignored.
  const onWarning = (warning: Error): void => {
    if (warning.name === WORKER_STATE_WARNING) t.fail(warning.message);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const server = await startServer(config, loggers);
  t.teardown(() => server.close());
  return { ...server, close: () => server.close(), store, dir };
}

/**
 * A server with one model from test/fixtures/ archived as `<name>.mar` (version 1.0) with the
 * given handler and extra files, loaded at start-up.
 */
export function serveFixtureModel(t: Test, name: string, handler: string, onnx: string, extraFiles: string[] = []): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) =>
      buildMar(store, {
        modelName: name,
        version: '1.0',
        handler,
        serializedFile: join(FIXTURES, onnx),
        ...(extraFiles.length > 0 ? { extraFiles: extraFiles.join(',') } : {}),
      }),
    properties: { load_models: `${name}.mar` },
  });
}

/**
 * One server for the tests of a file that only ask it questions (no registration, no metric
 * counted from zero, no stop): started by the first test that needs it, closed when the file ends.
 * A server's start and its workers' loads are most of such a test's time.
 */
export function sharedServer(start: (t: Test) => Promise<TestServer>): () => Promise<TestServer> {
  let server: Promise<TestServer> | undefined;
  return () => (server ??= start(tap));
}

/**
 * t.same for big arrays: tap's deep comparison (tcompare) walks them element by element (0.7 of
 * test/kserve-binary's 2.4 CPU-s went to eight arrays of 150k floats), so a typed array's or
 * buffer's bytes, or a JSON answer's text, are compared first, and only
 * values that differ go to t.same, whose failure shows the diff. (Equal bytes or equal JSON text
 * mean t.same passes too, for values parsed from JSON, which hold no NaN; a difference, as -0 and
 * 0 or two orders of keys, is still t.same's to judge.)
 */
export function sameLarge(t: Test, actual: ArrayBufferView | unknown[], expected: ArrayBufferView | unknown[], message = 'should be equivalent'): boolean {
  return equalAtOnce(actual, expected) ? t.pass(message) : t.same(actual, expected, message);
}

function equalAtOnce(actual: ArrayBufferView | unknown[], expected: ArrayBufferView | unknown[]): boolean {
  if (Array.isArray(actual) || Array.isArray(expected)) return JSON.stringify(actual) === JSON.stringify(expected);
  const bytes = (view: ArrayBufferView): Buffer => Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  return actual.constructor === expected.constructor && bytes(actual).equals(bytes(expected));
}

/** Polls `check` until it holds; past `timeoutMs` throws, naming `what` (a function: what it says then). */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 30_000, what: string | (() => string) = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
}

/** The value of one model's series of /metrics, 0 when it is not there yet. */
export async function metric(server: TestServer, series: string, model: string): Promise<number> {
  const text = await (await fetch(`${server.urls.metrics}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series}{`) && l.includes(`model_name="${model}",`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** Waits until `count` prediction requests for `model` have reached the server. */
export function requestsArrived(server: TestServer, model: string, count: number): Promise<void> {
  return waitFor(async () => (await metric(server, 'ts_inference_requests_total', model)) >= count, 10_000, `${count} requests for ${model} in`);
}

/** Waits until every worker of the model's default version is READY. */
export async function waitReady(management: string, model: string, workers = 1): Promise<void> {
  await waitFor(
    async () => {
      const res = await fetch(`${management}/models/${model}`);
      if (res.status !== 200) return false;
      const [d] = (await res.json()) as Array<{ workers: Array<{ status: string }> }>;
      return d!.workers.filter((w) => w.status === 'READY').length >= workers;
    },
    30_000,
    `${model} ready`,
  );
}

/**
 * A port free on 127.0.0.1 right now, for servers started as a user would (config.properties).
 * Drawn from below the kernel's ephemeral range: a port the kernel hands out (another test's
 * `listen(0)`, or the source port of any outgoing connection) could be taken between this check
 * and the server's own listen, which under a loaded parallel run it was (tsserve --start failed
 * with EADDRINUSE). Only another freePort can pick from this range, at random among thousands.
 */
export async function freePort(): Promise<number> {
  const top = ephemeralRangeStart();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = top - 1 - Math.floor(Math.random() * (top - 1 - FREE_PORT_FLOOR));
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port below ${top} after 50 tries`);
}

const FREE_PORT_FLOOR = 10_000;
const handedOut = new Set<number>();

/** The first port of the kernel's ephemeral range (32768 when it cannot be read). */
export function ephemeralRangeStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > FREE_PORT_FLOOR + 1000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * Writes `dir/config.properties` as a user would for a server started with the CLI: three free
 * ports on 127.0.0.1, plus `extra` lines. Answers the three base URLs.
 */
export async function writeUserConfig(dir: string, extra: string[] = []): Promise<{ inference: string; management: string; metrics: string }> {
  const [inf, mgmt, met, grpcInf, grpcMgmt] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const urls = { inference: `http://127.0.0.1:${inf}`, management: `http://127.0.0.1:${mgmt}`, metrics: `http://127.0.0.1:${met}` };
  writeFileSync(
    join(dir, 'config.properties'),
    [
      `inference_address=${urls.inference}`,
      `management_address=${urls.management}`,
      `metrics_address=${urls.metrics}`,
      `grpc_inference_port=${grpcInf}`,
      `grpc_management_port=${grpcMgmt}`,
      ...extra,
    ].join('\n') + '\n',
  );
  return urls;
}

/** The TorchServe error body `{code, type, message}` of a response. */
export async function errorBody(res: Response): Promise<{ code: number; type: string; message: string }> {
  return JSON.parse(await res.text()) as { code: number; type: string; message: string };
}

/** mulberry32: a small, good-enough seeded generator of [0, 1), so a failure can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

/** The PID `tsserve --start` recorded in `tmp` (its TMPDIR): its one PID file there. */
export function startedPid(tmp: string): number {
  const files = readdirSync(tmp).filter((f) => f.startsWith('.tsserve-') && f.endsWith('.pid'));
  if (files.length !== 1) throw new Error(`expected one PID file in ${tmp}, found ${files.length}`);
  return Number(readFileSync(join(tmp, files[0]!), 'utf8').split('\n')[0]);
}

/** `tsserve <args>` run as a user runs it from `cwd`, to its end: its exit status and its output (stdout, then stderr). */
export function tsserve(args: string[], cwd: string, env: NodeJS.ProcessEnv): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'tsserve.js'), ...args], {
    cwd,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

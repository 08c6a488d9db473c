// onnxruntime-node 1.29 and later collects telemetry on Linux unless told not to: at a process's
// first session it writes a device id and an event cache under $HOME/.cache/Microsoft, leaves
// mat-debug-<pid>.log and .ses files in $TMPDIR, and some seconds later looks up
// mobile.events.data.microsoft.com to upload. tsserve turns it off (docs/deploy.md, "No
// telemetry"): a server's workers, and a program that opens sessions through tsserve's runtime,
// leave none of it in a HOME and TMPDIR of their own and connect nowhere but 127.0.0.1.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMnistMar, MNIST_DIR, ROOT, startedPid, tempDir, waitFor, waitReady, writeUserConfig } from '../helpers.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');

/**
 * Variables that turn onnxruntime's telemetry off by themselves: its own switch, its test harness's,
 * and those of the CI services it recognises. The processes here run without them, so that only
 * tsserve can be what turns it off. XDG_CACHE_HOME would move the cache out of the temporary HOME.
 */
const SWITCHES = [
  'ORT_DISABLE_TELEMETRY',
  'ORT_RUNNING_UNIT_TESTS',
  'CI',
  'TF_BUILD',
  'GITHUB_ACTIONS',
  'GITLAB_CI',
  'CIRCLECI',
  'TRAVIS',
  'JENKINS_URL',
  'CODEBUILD_BUILD_ID',
  'BUILDKITE',
  'TEAMCITY_VERSION',
  'APPVEYOR',
  'BITBUCKET_BUILD_NUMBER',
  'SYSTEM_TEAMFOUNDATIONCOLLECTIONURI',
  'XDG_CACHE_HOME',
];

/**
 * How long the server's workers stay up after their predictions for an upload to be tried: without
 * the switch, onnxruntime 1.30 looked the collector up about 9 s after a worker's first session.
 */
const UPLOAD_WINDOW_MS = 15_000;

/** A HOME and a TMPDIR of their own, and the environment that names them, without SWITCHES. */
function ownHomeAndTmp(t: Test): { home: string; tmp: string; dir: string; env: NodeJS.ProcessEnv } {
  const dir = tempDir(t);
  const home = join(dir, 'home');
  const tmp = join(dir, 'tmp');
  mkdirSync(home);
  mkdirSync(tmp);
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, TMPDIR: tmp };
  for (const name of SWITCHES) delete env[name];
  return { home, tmp, dir, env };
}

/** What onnxruntime's telemetry left in `home`, and in `folders` (TMPDIR, the working directory). */
function telemetryLeftovers(home: string, folders: string[]): string[] {
  const cache = join(home, '.cache', 'Microsoft');
  const files = folders.flatMap((folder) => readdirSync(folder).filter((f) => /^mat-debug-\d+\.log$/.test(f) || f.endsWith('.ses')));
  return [...(existsSync(cache) ? [cache] : []), ...files];
}

/** strace's path, when it is installed and may trace here; the connection check needs it. */
function usableStrace(): string | undefined {
  const probe = spawnSync('strace', ['-f', '-qq', '-e', 'trace=connect', '-o', '/dev/null', 'true'], { timeout: 10_000 });
  return probe.status === 0 ? 'strace' : undefined;
}

/** The addresses of the internet sockets the traced processes tried to connect to (strace -e trace=connect). */
function connectedAddresses(trace: string): string[] {
  if (!existsSync(trace)) return [];
  return [...readFileSync(trace, 'utf8').matchAll(/connect\(\d+, \{sa_family=AF_INET6?, (sin6?_port=[^}]*)\}/g)].map((m) => m[1]!);
}

function outsideLoopback(address: string): boolean {
  return !/inet_addr\("127\.0\.0\.1"\)|inet_pton\(AF_INET6, "::1"/.test(address);
}

t.test("a server's workers, after predictions, leave no telemetry files and connect nowhere but 127.0.0.1", async (t) => {
  const { home, tmp, dir, env } = ownHomeAndTmp(t);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  buildMnistMar(store);
  const urls = await writeUserConfig(dir, ['default_workers_per_model=2']);
  const strace = usableStrace();
  const trace = join(dir, 'connect.trace');
  const server = [TSSERVE, '--start', '--foreground', '--ncs', '--model-store', 'model-store', '--models', 'mnist=mnist.mar', '--disable-token-auth'];
  const [command, args] = strace ? [strace, ['-f', '-qq', '-e', 'trace=connect', '-o', trace, process.execPath, ...server]] : [process.execPath, server];
  const child: ChildProcess = spawn(command, args, { cwd: dir, env, stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // strace's end would leave the server it traced running: the server is ended first, by its PID.
  let serverPid: number | undefined;
  t.teardown(() => {
    try {
      if (serverPid !== undefined) process.kill(serverPid, 'SIGKILL');
    } catch {
      /* it has stopped */
    }
    child.kill('SIGKILL');
  });
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 60_000, 'server up');
  serverPid = startedPid(tmp);
  await waitReady(urls.management, 'mnist', 2);

  // The workers opened their sessions when they loaded the model: onnxruntime's telemetry, unless
  // switched off, is set up by then and records these runs.
  const digits = readdirSync(join(MNIST_DIR, 'digits'))
    .filter((f) => f.endsWith('.png'))
    .slice(0, 6);
  const answers = await Promise.all(
    digits.map(async (file) =>
      (await fetch(`${urls.inference}/predictions/mnist`, { method: 'PUT', body: readFileSync(join(MNIST_DIR, 'digits', file)) })).text(),
    ),
  );
  t.same(
    answers,
    digits.map((f) => f[0]),
    'the predictions are answered',
  );

  // Up to UPLOAD_WINDOW_MS for an upload to be tried; none is what passes, so the wait's end is no failure.
  if (strace) await waitFor(() => connectedAddresses(trace).some(outsideLoopback), UPLOAD_WINDOW_MS, 'a connection out').catch(() => undefined);
  process.kill(serverPid, 'SIGTERM');
  await exited;

  t.same(telemetryLeftovers(home, [tmp, dir]), [], 'no ~/.cache/Microsoft, mat-debug-*.log or .ses file');
  if (strace) t.same(connectedAddresses(trace).filter(outsideLoopback), [], 'no connection tried but to 127.0.0.1');
  else t.comment('strace is not usable here: the connections are not checked');
});

t.test("a program's sessions opened through tsserve's runtime leave no telemetry files", async (t) => {
  const { home, tmp, env } = ownHomeAndTmp(t);
  const script = [
    `const { createSession, ort } = await import(${JSON.stringify(join(ROOT, 'dist', 'src', 'index.js'))});`,
    `const session = await createSession(${JSON.stringify(join(MNIST_DIR, 'mnist.onnx'))});`,
    `const [name] = session.inputNames;`,
    `await session.run({ [name]: new ort.Tensor('float32', new Float32Array(784), [1, 1, 28, 28]) });`,
    `console.log('ran');`,
  ].join('\n');
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: tmp, env, encoding: 'utf8', timeout: 60_000 });
  t.equal(run.stdout.trim(), 'ran', run.stderr);
  t.same(telemetryLeftovers(home, [tmp]), [], 'no ~/.cache/Microsoft, mat-debug-*.log or .ses file');
});

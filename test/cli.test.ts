// `tsserve --start` runs the server in the background and returns once it answers, as
// torchserve does; `--stop` ends it. Run as a user would, from a folder with config.properties.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import {
  buildMar,
  buildMnistMar,
  ephemeralRangeStart,
  FIXTURES,
  freePort,
  MNIST_DIR,
  ROOT,
  startedPid,
  tempDir,
  waitFor,
  writeUserConfig,
  tsserve,
} from './helpers.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');

t.test('the ports these tests give servers are free and never ones the kernel hands out itself (a parallel run took one: EADDRINUSE)', async (t) => {
  const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
  t.equal(new Set(ports).size, ports.length, 'no port handed out twice');
  t.ok(
    ports.every((p) => p < ephemeralRangeStart()),
    `all below ${ephemeralRangeStart()}`,
  );
});

t.test('--start returns once the server answers; --stop stops it', async (t) => {
  const dir = tempDir(t);
  const env = { TMPDIR: dir };
  mkdirSync(join(dir, 'model-store'));
  buildMnistMar(join(dir, 'model-store'));
  const urls = await writeUserConfig(dir, ['default_workers_per_model=1']);
  t.teardown(() => tsserve(['--stop'], dir, env));

  const start = tsserve(['--start', '--model-store', 'model-store', '--models', 'mnist=mnist.mar', '--disable-token-auth'], dir, env);
  t.equal(start.status, 0, start.out);
  t.match(start.out, /tsserve started \(pid \d+\)/);
  const ping = await fetch(`${urls.inference}/ping`);
  t.equal(ping.status, 200, 'answers as soon as --start returns');

  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  const res = await fetch(`${urls.inference}/predictions/mnist`, { method: 'PUT', body: seven });
  t.equal(await res.text(), '7', 'the model named by --models serves (its workers may still be loading: the request waits)');

  const again = tsserve(['--start', '--model-store', 'model-store'], dir, env);
  t.equal(again.status, 1);
  t.match(again.out, 'tsserve is already running, please use tsserve --stop to stop tsserve.');

  const stop = tsserve(['--stop'], dir, env);
  t.equal(stop.status, 0);
  t.match(stop.out, 'tsserve has stopped.');
  await t.rejects(fetch(`${urls.inference}/ping`), 'the port is closed');
  t.match(tsserve(['--stop'], dir, env).out, 'tsserve is not currently running.');
});

t.test('--start returns once the start-up models serve: their workers have loaded and warmed up', async (t) => {
  const dir = tempDir(t);
  const env = { TMPDIR: dir };
  mkdirSync(join(dir, 'model-store'));
  writeFileSync(join(dir, 'slow-warmup.txt'), 'sleep:1500');
  writeFileSync(join(dir, 'model-config.yaml'), 'warmupFile: slow-warmup.txt\n');
  buildMar(join(dir, 'model-store'), {
    modelName: 'echo',
    version: '1.0',
    handler: join(FIXTURES, 'echo_handler.ts'),
    configFile: join(dir, 'model-config.yaml'),
    extraFiles: join(dir, 'slow-warmup.txt'),
  });
  // The workers' warm-up is the subject, not the front end's: its probes of a 1.5 s sample would
  // add up to 3 s of waiting (front-end-warm-up.test.ts has it).
  const urls = await writeUserConfig(dir, ['default_workers_per_model=2', 'front_end_warmup_ms=0']);
  t.teardown(() => tsserve(['--stop'], dir, env));
  const start = tsserve(['--start', '--model-store', 'model-store', '--models', 'echo=echo.mar', '--disable-token-auth'], dir, env);
  t.equal(start.status, 0, start.out);
  const [described] = (await (await fetch(`${urls.management}/models/echo`)).json()) as Array<{ workers: Array<{ status: string }> }>;
  t.same(
    described!.workers.map((w) => w.status),
    ['READY', 'READY'],
    'both workers READY when --start returns, after a 1.5 s warm-up each',
  );
  t.equal((await fetch(`${urls.inference}/predictions/echo`, { method: 'POST', body: 'hi' })).status, 200);
});

t.test('vmargs: its Node.js options reach the server process, JVM options from an old config are left out with a warning', async (t) => {
  const dir = tempDir(t);
  const env = { TMPDIR: dir };
  mkdirSync(join(dir, 'model-store'));
  const urls = await writeUserConfig(dir, ['vmargs=-Xmx1g --max-old-space-size=300 -XX:+UseContainerSupport --max-semi-space-size=1']);
  t.teardown(() => tsserve(['--stop'], dir, env));

  const start = tsserve(['--start', '--model-store', 'model-store', '--disable-token-auth'], dir, env);
  t.equal(start.status, 0, start.out);
  t.match(start.out, 'Warning: vmargs: ignoring JVM parameters -Xmx1g -XX:+UseContainerSupport');
  t.match(start.out, 'Warning: tsserve is using non-default Node.js parameters: --max-old-space-size=300 --max-semi-space-size=1');
  const pid = startedPid(dir);
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  t.ok(argv.includes('--max-old-space-size=300') && argv.includes('--max-semi-space-size=1'), `the server runs with them: ${argv.join(' ')}`);
  t.notOk(
    argv.some((a) => a.startsWith('-X')),
    'and without the JVM ones',
  );
  t.equal((await fetch(`${urls.inference}/ping`)).status, 200);

  t.equal(tsserve(['--stop'], dir, env).status, 0);

  // In the foreground the server is this very process: vmargs cannot apply, and it says so.
  const foreground = spawn(process.execPath, [TSSERVE, '--start', '--foreground', '--model-store', 'model-store', '--disable-token-auth'], {
    cwd: dir,
    env: { ...process.env, ...env },
  });
  let out = '';
  foreground.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  await waitFor(() => out.includes('Model server started.'), 30_000, 'the foreground server');
  foreground.kill('SIGTERM');
  await new Promise((resolve) => foreground.once('exit', resolve));
  t.match(out, 'Warning: vmargs applies to `tsserve --start` without --foreground');
});

t.test(
  'TSSERVE_FOREGROUND=true (the image sets it): `torchserve --start` is the server itself, so a container keeps its main process; SIGTERM exits 0',
  async (t) => {
    const dir = tempDir(t);
    const env = { TMPDIR: dir, TSSERVE_FOREGROUND: 'true' };
    mkdirSync(join(dir, 'model-store'));
    buildMnistMar(join(dir, 'model-store'));
    const urls = await writeUserConfig(dir, ['default_workers_per_model=1']);
    const server = spawn(process.execPath, [TSSERVE, '--start', '--model-store=model-store', '--models', 'mnist=mnist.mar', '--disable-token-auth'], {
      cwd: dir,
      env: { ...process.env, ...env },
    });
    const exited = new Promise<number | null>((resolve) => server.once('exit', resolve));
    t.teardown(() => server.kill('SIGKILL'));
    await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.ok === true, 30_000, 'the server');
    t.equal(server.exitCode, null, '--start has not returned: this process serves');
    const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
    t.equal(await (await fetch(`${urls.inference}/predictions/mnist`, { method: 'PUT', body: seven })).text(), '7');
    server.kill('SIGTERM');
    t.equal(await exited, 0);
  },
);

t.test('usage errors exit 2, as torchserve and torch-model-archiver (argparse) do; tsserve-app says why it cannot listen', async (t) => {
  const dir = tempDir(t);
  const run = (bin: string, args: string[]): { status: number | null; out: string } => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', bin), ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, out: r.stdout + r.stderr };
  };
  const unknown = run('tsserve.js', ['--start', '--bogus']);
  t.same([unknown.status, /unknown option '--bogus'/.test(unknown.out)], [2, true], 'tsserve: an unknown flag');
  // --start with --stop, --help, and the validation messages: test/unit/cli.test.ts, in-process.
  const missing = run('tsserve-archiver.js', ['--version', '1.0', '--handler', 'image_classifier']);
  t.same([missing.status, /required option '--model-name <name>' not specified/.test(missing.out)], [2, true], 'tsserve-archiver: a missing flag');
  t.equal(run('tsserve-convert.js', []).status, 2, 'tsserve-convert: no archive named');
  const badPort = run('tsserve-app.js', ['--port', 'eighty']);
  t.same(
    [badPort.status, /--port <port>' argument 'eighty' is invalid\. a port is a whole number from 0 to 65535\./.test(badPort.out)],
    [2, true],
    badPort.out,
  );
  const badUrl = run('tsserve-app.js', ['--inference', 'not-a-url']);
  t.same([badUrl.status, /not a URL; give one such as http:\/\/127\.0\.0\.1:8080/.test(badUrl.out)], [2, true], badUrl.out);
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = (taken.address() as { port: number }).port;
  const busy = await new Promise<{ status: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'tsserve-app.js'), '--port', String(port)], { cwd: dir });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (status) => resolve({ status, out }));
  });
  t.equal(busy.status, 1);
  t.equal(
    busy.out.trim(),
    `tsserve-app cannot listen on 127.0.0.1:${port}: the port is in use. Choose another with --port (or --host).`,
    'one line, no stack trace',
  );
});

t.test('--stop stops the server started from this directory only: another directory (or user) sharing the temp dir keeps its own', async (t) => {
  const tmp = tempDir(t);
  const env = { TMPDIR: tmp };
  const project = join(tmp, 'project');
  const elsewhere = join(tmp, 'elsewhere');
  mkdirSync(join(project, 'model-store'), { recursive: true });
  mkdirSync(elsewhere);
  const urls = await writeUserConfig(project);
  t.teardown(() => tsserve(['--stop'], project, env));
  const start = tsserve(['--start', '--model-store', 'model-store', '--disable-token-auth'], project, env);
  t.equal(start.status, 0, start.out);
  const other = tsserve(['--stop'], elsewhere, env);
  t.match(other.out, 'tsserve is not currently running.');
  t.match(other.out, `A tsserve started from ${project} (pid ${startedPid(tmp)}) is: run tsserve --stop there.`);
  t.equal((await fetch(`${urls.inference}/ping`)).status, 200, 'still serving');
  t.match(tsserve(['--stop'], project, env).out, 'tsserve has stopped.');
});

// `tsserve --start` whose start-up models or ports fail: each failed model is named with its
// reason on the console and the exit status says the server runs without them (3); a port in use
// is said first and plainly, the server does not start (1), and no PID file is left behind.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { buildMnistMar, MNIST_DIR, ROOT, tempDir, writeUserConfig, tsserve } from './helpers.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');

/** The PID files `--start` left in `tmp` (its TMPDIR). */
function pidFiles(tmp: string): string[] {
  return readdirSync(tmp).filter((f) => f.startsWith('.tsserve-') && f.endsWith('.pid'));
}

t.test('--start --models missing.mar: exits 3 (started, models failed), naming the model and why on the console', async (t) => {
  const dir = tempDir(t);
  const env = { TMPDIR: dir };
  mkdirSync(join(dir, 'model-store'));
  const urls = await writeUserConfig(dir);
  t.teardown(() => tsserve(['--stop'], dir, env));
  const start = tsserve(['--start', '--model-store', 'model-store', '--models', 'missing.mar', '--disable-token-auth'], dir, env);
  t.equal(start.status, 3, start.out);
  t.match(start.out, /missing\.mar: Model not found at: missing\.mar/, 'the model and the reason');
  t.match(start.out, /0 of 1 start-up models serve/);
  t.match(start.out, /Exit status 3: started, but start-up models failed/, 'the exit status is explained where it is seen');
  t.equal((await fetch(`${urls.inference}/ping`)).status, 200, 'the server runs, as TorchServe keeps running');
  t.equal(pidFiles(dir).length, 1, 'so --stop can stop it');
});

t.test('--start with a missing, a corrupt and a good model: the good one serves, the two others are named with their reasons', async (t) => {
  const dir = tempDir(t);
  const env = { TMPDIR: dir };
  mkdirSync(join(dir, 'model-store'));
  buildMnistMar(join(dir, 'model-store'));
  writeFileSync(join(dir, 'model-store', 'corrupt.mar'), 'this is not a zip archive\n'.repeat(20));
  const urls = await writeUserConfig(dir, ['default_workers_per_model=1']);
  t.teardown(() => tsserve(['--stop'], dir, env));
  const start = tsserve(
    ['--start', '--model-store', 'model-store', '--models', 'mnist=mnist.mar', 'nope=missing.mar', 'corrupt.mar', '--disable-token-auth'],
    dir,
    env,
  );
  t.equal(start.status, 3, start.out);
  t.match(start.out, /1 of 3 start-up models serve/);
  t.match(start.out, /nope=missing\.mar: Model not found/);
  t.match(start.out, /corrupt\.mar: \S/);
  t.notMatch(start.out, /mnist=mnist\.mar:/, 'the model that serves is not among them');
  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  t.equal(await (await fetch(`${urls.inference}/predictions/mnist`, { method: 'PUT', body: seven })).text(), '7');
  t.match(tsserve(['--stop'], dir, env).out, 'tsserve has stopped.');
});

t.test('--start with the inference port taken: said first and plainly (address and key), no worker error, exit 1, no PID file left', async (t) => {
  const dir = tempDir(t);
  const env = { TMPDIR: dir };
  mkdirSync(join(dir, 'model-store'));
  buildMnistMar(join(dir, 'model-store'));
  const urls = await writeUserConfig(dir, ['default_workers_per_model=1']);
  const port = Number(new URL(urls.inference).port);
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  t.teardown(() => tsserve(['--stop'], dir, env));
  const plainly = `tsserve did not start: inference_address http://127.0.0.1:${port} cannot be opened: the port is in use. Choose another with inference_address in ${join(dir, 'config.properties')}.`;
  const start = tsserve(['--start', '--model-store', 'model-store', '--models', 'mnist=mnist.mar', '--disable-token-auth'], dir, env);
  t.equal(start.status, 1, start.out);
  t.equal(start.out.trim(), plainly, 'one line says it');
  t.same(pidFiles(dir), [], 'no PID file left');
  // In the foreground the terminal is the server log too: the line is on stderr, the log on stdout.
  const foreground = spawnSync(process.execPath, [TSSERVE, '--start', '--foreground', '--model-store', 'model-store', '--models', 'mnist=mnist.mar'], {
    cwd: dir,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(foreground.status, 1, foreground.stderr);
  t.equal(foreground.stderr.trim(), plainly, 'foreground: the same line');
  t.notMatch(foreground.stdout, /Failed to start workers|Model not found|EADDRINUSE/, 'no misleading worker error, no errno in the log');
  t.same(pidFiles(dir), [], 'no PID file left in the foreground either');
});

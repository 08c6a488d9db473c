// Node's compile cache (bin/compile-cache.js): `tsserve --start` keeps V8's code of the server's
// and the workers' modules in <tmpdir>/tsserve-compile-cache-<uid> (or NODE_COMPILE_CACHE), so that a
// start after the first compiles less; a folder it cannot write, or one another user could, leaves
// the cache off, and nothing else.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { buildMar, FIXTURES, ROOT, tempDir, tsserve, writeUserConfig } from './helpers.js';

/** A folder with echo.mar in its model store and a config.properties: what `tsserve --start` runs from. */
async function echoServerDir(t: Test, env: NodeJS.ProcessEnv): Promise<{ dir: string; inference: string }> {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'model-store'));
  buildMar(join(dir, 'model-store'), { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
  const { inference } = await writeUserConfig(dir, ['default_workers_per_model=1']);
  t.teardown(() => tsserve(['--stop'], dir, env));
  return { dir, inference };
}

const start = (dir: string, env: NodeJS.ProcessEnv) =>
  tsserve(['--start', '--model-store', 'model-store', '--models', 'echo=echo.mar', '--disable-token-auth'], dir, env);

const echo = async (inference: string, body: string): Promise<{ status: number; text: string }> => {
  const res = await fetch(`${inference}/predictions/echo`, { method: 'POST', body });
  return { status: res.status, text: await res.text() };
};

/** The environment of a test's tsserve: `env`, without a compile cache setting of the test run's own. */
function userEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { NODE_COMPILE_CACHE: undefined, NODE_DISABLE_COMPILE_CACHE: undefined, ...env };
}

/** The default cache folder under `tmp`, the user's own. */
const privateCache = (tmp: string): string => join(tmp, `tsserve-compile-cache-${process.getuid?.() ?? -1}`);

t.test('the server and its workers keep their compiled modules in <tmpdir>/tsserve-compile-cache-<uid>', async (t) => {
  const tmp = tempDir(t);
  const env = userEnv({ TMPDIR: tmp });
  const { dir, inference } = await echoServerDir(t, env);
  const started = start(dir, env);
  t.equal(started.status, 0, started.out);
  const cache = privateCache(tmp);
  t.same(await echo(inference, 'env:NODE_COMPILE_CACHE'), { status: 200, text: cache }, 'a worker is told where it is');
  t.equal(tsserve(['--stop'], dir, env).status, 0);
  const [versioned] = readdirSync(cache);
  const entries = versioned ? readdirSync(join(cache, versioned)).length : 0;
  t.ok(entries > 100, `${entries} modules cached, the server's and the worker's`);
});

t.test('a compile cache folder that cannot be made leaves the cache off: the server starts and serves', async (t) => {
  const tmp = tempDir(t);
  writeFileSync(join(tmp, 'a-file'), '');
  const env = userEnv({ TMPDIR: tmp, NODE_COMPILE_CACHE: join(tmp, 'a-file', 'cache') });
  const { dir, inference } = await echoServerDir(t, env);
  const started = start(dir, env);
  t.equal(started.status, 0, started.out);
  t.equal((await echo(inference, 'hello')).status, 200);
});

/** The folder bin/compile-cache.js turns the cache on in, with `env`, or 'off': in a Node process of its own. */
function chosenFolder(env: NodeJS.ProcessEnv): string {
  const script = `import(${JSON.stringify(pathToFileURL(join(ROOT, 'bin', 'compile-cache.js')).href)}).then((m) => { m.compileCache(); console.log(process.env.NODE_COMPILE_CACHE ?? 'off'); })`;
  return execFileSync(process.execPath, ['-e', script], { env: { ...process.env, ...userEnv(env) }, encoding: 'utf8' }).trim();
}

t.test('a default cache folder someone else made or may write is not used: V8 would run the code it holds', async (t) => {
  const cases: Array<[string, (folder: string) => void]> = [['writable by all', (folder) => chmodSync(folder, 0o777)]];
  // Only root can give a folder to another user.
  if (process.getuid?.() === 0) cases.push(['owned by another user', (folder) => chownSync(folder, 65534, 65534)]);
  for (const [what, spoil] of cases) {
    const tmp = tempDir(t);
    const folder = privateCache(tmp);
    mkdirSync(folder, { mode: 0o700 });
    spoil(folder);
    t.equal(chosenFolder({ TMPDIR: tmp }), 'off', `${what}: the cache stays off`);
    t.same(readdirSync(folder), [], `${what}: nothing written to it`);
  }
  const tmp = tempDir(t);
  t.equal(chosenFolder({ TMPDIR: tmp }), privateCache(tmp), 'a folder it makes itself is used');
  t.equal(chosenFolder({ TMPDIR: tempDir(t), NODE_DISABLE_COMPILE_CACHE: '1' }), 'off', 'NODE_DISABLE_COMPILE_CACHE: off');
});

// The path of a user who never clones the repository: `npm run pack`, install the tarball into an
// empty project, archive their own model with the package's tsserve-archiver, serve it with the
// package's tsserve, and type-check a handler against the package's types.
//
// The install runs `npm ci --offline` from npm's cache (the repository's own `npm ci` filled it),
// with a lockfile that pins the versions the repository's lockfile tested: tests reach nothing but
// 127.0.0.1. What a fresh machine does online (`npm install ./tsserve-*.tgz`) is in the README,
// measured by hand.
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { MNIST_DIR, ROOT, tempDir, writeUserConfig } from './helpers.js';

const run = promisify(execFile);

interface LockEntry {
  dev?: boolean;
  devOptional?: boolean;
  [key: string]: unknown;
}
interface PackedManifest {
  version: string;
  bundleDependencies: string[];
  dependencies: Record<string, string>;
  [key: string]: unknown;
}

t.test("the packed package installs from the npm registry alone and serves a user's own .mar", async (t) => {
  const dir = tempDir(t);
  const env = { ...userEnvironment(), TMPDIR: dir };

  const packed = await run(process.execPath, [join(ROOT, 'scripts', 'pack.mjs'), '--no-build'], { cwd: dir, env, maxBuffer: 1 << 24 });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  t.ok(tarball, packed.stdout);
  t.match(tarball!, `-${process.platform}-${process.arch}.tgz`, 'named for the platform whose binaries it carries');

  const project = join(dir, 'project');
  mkdirSync(project);
  copyFileSync(join(dir, tarball!), join(project, 'tsserve.tgz'));
  writeUserProject(project);
  const install = await run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: project, env, maxBuffer: 1 << 24 });
  t.notMatch(install.stderr, /onnxruntime|nuget|ENOTFOUND|EBADENGINE|Unknown (project|user|env) config/, 'no download attempt, engine or config warning');

  const ort = join(project, 'node_modules', 'tsserve', 'node_modules', 'onnxruntime-node');
  const ortManifest = JSON.parse(readFileSync(join(ort, 'package.json'), 'utf8')) as { scripts?: unknown };
  t.equal(ortManifest.scripts, undefined, 'the bundled onnxruntime-node has no install script');
  t.same(readdirSync(join(ort, 'bin', 'napi-v6')), [process.platform], "and only this platform's binaries");
  t.notOk(existsSync(join(project, 'node_modules', 'typescript')), 'the TypeScript compiler is not installed');

  // Their own model: the MNIST network with a handler of theirs, archived without TypeScript.
  copyFileSync(join(MNIST_DIR, 'mnist.onnx'), join(project, 'mnist.onnx'));
  copyFileSync(join(MNIST_DIR, 'mnist_handler.ts'), join(project, 'digits_handler.ts'));
  mkdirSync(join(project, 'store'));
  const bin = (name: string) => join(project, 'node_modules', '.bin', name);
  await run(
    bin('tsserve-archiver'),
    ['--model-name', 'digits', '--version', '1.0', '--serialized-file', 'mnist.onnx', '--handler', 'digits_handler.ts', '--export-path', 'store'],
    { cwd: project, env },
  );
  t.ok(existsSync(join(project, 'store', 'digits.mar')), 'tsserve-archiver made the archive');

  const urls = await writeUserConfig(project, ['default_workers_per_model=1']);
  t.teardown(() => run(bin('tsserve'), ['--stop'], { cwd: project, env }).catch(() => undefined));
  const started = await run(bin('tsserve'), ['--start', '--model-store', 'store', '--models', 'digits=digits.mar', '--disable-token-auth'], {
    cwd: project,
    env,
  });
  t.match(started.stdout + started.stderr, /tsserve started/);
  const answer = await fetch(`${urls.inference}/predictions/digits`, { method: 'PUT', body: readFileSync(join(MNIST_DIR, 'digits', '7_0.png')) });
  t.equal(answer.status, 200);
  t.equal((await answer.text()).trim(), '7');
  await run(bin('tsserve'), ['--stop'], { cwd: project, env });

  // A handler project type-checks against the package's own declarations.
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, types: [] },
      files: ['digits_handler.ts'],
    }),
  );
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const typed = await run(process.execPath, [tsc, '-p', project], { cwd: project, env }).then(
    () => '',
    (err: { stdout: string }) => err.stdout,
  );
  t.equal(typed, '', 'no type errors');
});

/**
 * An empty project depending on the tarball, with a lockfile of the versions the repository's
 * lockfile pins for tsserve's production dependencies (onnxruntime comes inside the tarball).
 */
function writeUserProject(project: string): void {
  const repoLock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const tarball = join(project, 'tsserve.tgz');
  const manifest = JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' })) as PackedManifest;
  const root = { name: 'user-project', version: '1.0.0', type: 'module', dependencies: { tsserve: 'file:tsserve.tgz' } };
  const packages: Record<string, unknown> = {
    '': root,
    'node_modules/tsserve': {
      ...pick(manifest, ['version', 'bundleDependencies', 'dependencies', 'peerDependencies', 'peerDependenciesMeta', 'bin', 'engines', 'os', 'cpu']),
      resolved: 'file:tsserve.tgz',
    },
  };
  for (const [path, entry] of Object.entries(repoLock.packages)) {
    if (path === '' || entry.dev || entry.devOptional || path.startsWith('node_modules/onnxruntime-')) continue;
    packages[path] = entry;
  }
  writeFileSync(join(project, 'package.json'), JSON.stringify(root, null, 2));
  writeFileSync(
    join(project, 'package-lock.json'),
    JSON.stringify({ name: root.name, version: root.version, lockfileVersion: 3, requires: true, packages }, null, 2),
  );
}

/** This process's environment without what npm and CI set for the repository's own install. */
function userEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) && key !== 'ONNXRUNTIME_NODE_INSTALL'));
}

function pick(record: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => record[k] !== undefined).map((k) => [k, record[k]]));
}

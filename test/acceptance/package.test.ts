// The README's commands, run as they are written, by a newcomer with a fresh copy of the
// repository: `npm ci && npx tsserve --start ...` (install, build, serve the example models), then
// `npm run pack`, and the path of a user who never clones it: install the tarball into an empty
// project, archive their own model with the package's tsserve-archiver, serve it with the package's
// tsserve, and type-check a handler against the package's types. The commands are read from
// README.md, so a README that changes is what is run.
//
// They run with the Node.js that runs this file and the npm beside it on PATH (CI: Node 22 with its
// own npm 10, and Node 24 with npm 11), from npm's cache (`npm_config_offline`): tests reach nothing
// but 127.0.0.1. So the user's install is the README's `npm install ./tsserve-...tgz` into a project
// whose lockfile pins the versions the repository's lockfile tested (a global install cannot be
// pinned, so needs the registry: measured by hand).
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { MNIST_DIR, ROOT, tempDir, writeUserConfig } from '../helpers.js';

const run = promisify(execFile);

// Two npm installs, two builds and three servers: 1-3 minutes here (Node 24: 54-62 s with a warm
// cache; Node 22 with npm 10: 169 s beside other tests), so more than the suite's 180 s per file
// when the machine is busy. Each command is bounded on its own (sh() below).
t.setTimeout(600_000);

interface LockEntry {
  dev?: boolean;
  devOptional?: boolean;
  hasInstallScript?: boolean;
  [key: string]: unknown;
}
interface PackedManifest {
  version: string;
  [key: string]: unknown;
}

t.test("the repository's lockfile never sends npm ci to onnxruntime-node's download step (npm 10 has no allowScripts)", async (t) => {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  t.notOk(
    lock.packages['node_modules/onnxruntime-node']?.hasInstallScript,
    'package-lock.json marks onnxruntime-node with hasInstallScript again (a new lockfile does): delete that line (README, "Two commands")',
  );
});

t.test('the tarball npm run pack makes is git-ignored', async (t) => {
  const ignored = spawnSync('git', ['check-ignore', '--no-index', '-q', `tsserve-0.1.0-${process.platform}-${process.arch}.tgz`], { cwd: ROOT });
  t.equal(ignored.status, 0);
});

t.test("README's commands, as written: a fresh copy installs, serves and packs; an empty project installs the package and serves a user's .mar", async (t) => {
  const dir = tempDir(t);
  const env = userEnvironment(dir);
  const sh = (command: string, cwd: string, extraEnv: NodeJS.ProcessEnv = {}) =>
    run('sh', ['-c', command], { cwd, env: { ...env, ...extraEnv }, maxBuffer: 1 << 26, timeout: 300_000 }).catch(
      (err: Error & { stdout: string; stderr: string }) => {
        throw new Error(`${command} failed: ${err.message}\n${err.stdout}\n${err.stderr}`);
      },
    );

  // A fresh copy: the repository's files as git knows them (with the changes not yet committed).
  const repo = join(dir, 'tsserve');
  copyRepository(repo);
  const served = await writeUserConfig(repo, ['default_workers_per_model=1']);
  const [install, tests] = readmeBlocks('Two commands');
  t.equal(tests, 'npm test', "the README's second command is the suite (npm test): not run here");
  t.teardown(() => sh('npx tsserve --stop', repo).catch(() => undefined));
  const started = await sh(install!, repo);
  t.notMatch(started.stderr, /nuget|ENOTFOUND|EBADENGINE|Unknown (project|user|env|cli) config/, 'no download attempt, engine or config warning');
  t.match(started.stdout, /tsserve started/);
  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  const example = await fetch(`${served.inference}/predictions/mnist`, { method: 'PUT', body: seven });
  t.equal((await example.text()).trim(), '7', 'the example mnist model answers');
  await sh('npx tsserve --stop', repo);

  const [pack, globalInstall, archive, serve] = readmeBlocks('Install it as a package');
  const packed = await sh(pack!, repo);
  const tarball = readdirSync(repo).find((f) => f.endsWith('.tgz'));
  t.ok(tarball, packed.stderr);
  t.match(tarball!, `-${process.platform}-${process.arch}.tgz`, 'named for the platform whose binaries it carries');
  t.match(globalInstall!, `# or into a project: npm install ./tsserve-`, 'the README names the install into a project, run here');

  const project = join(dir, 'project');
  mkdirSync(project);
  copyFileSync(join(repo, tarball!), join(project, tarball!));
  writeUserProject(project, tarball!);
  const installed = await sh(`npm install ./${tarball}`, project);
  t.notMatch(installed.stderr, /onnxruntime|nuget|ENOTFOUND|EBADENGINE|Unknown (project|user|env) config/, 'no download attempt, engine or config warning');

  const ort = join(project, 'node_modules', 'tsserve', 'node_modules', 'onnxruntime-node');
  const ortManifest = JSON.parse(readFileSync(join(ort, 'package.json'), 'utf8')) as { scripts?: unknown };
  t.equal(ortManifest.scripts, undefined, 'the bundled onnxruntime-node has no install script');
  t.same(readdirSync(join(ort, 'bin', 'napi-v6')), [process.platform], "and only this platform's binaries");
  t.notOk(existsSync(join(project, 'node_modules', 'typescript')), 'the TypeScript compiler is not installed');

  // Their own model, named as the README names it: the MNIST network with a handler of theirs,
  // archived without TypeScript. The package's commands are on PATH, as a global install puts them.
  copyFileSync(join(MNIST_DIR, 'mnist.onnx'), join(project, 'model.onnx'));
  copyFileSync(join(MNIST_DIR, 'mnist_handler.ts'), join(project, 'handler.ts'));
  const onPath = { PATH: `${join(project, 'node_modules', '.bin')}${delimiter}${env.PATH}` };
  const archived = await sh(archive!, project, onPath);
  t.ok(existsSync(join(project, 'store', 'digits.mar')), 'tsserve-archiver made the archive');
  t.match(archived.stderr, /^Export path \S+ does not exist; creating it\.$/m, 'the export path is made with a plain notice, not a process warning');
  const compiled = execFileSync('unzip', ['-p', join(project, 'store', 'digits.mar'), 'handler.js'], { encoding: 'utf8' });
  t.notMatch(compiled, 'tsserve-archiver-', "Node's type stripper named the handler by its place in the archive, not the temporary stage");

  const urls = await writeUserConfig(project, ['default_workers_per_model=1']);
  t.teardown(() => sh('tsserve --stop', project, onPath).catch(() => undefined));
  const userStarted = await sh(serve!, project, onPath);
  t.match(userStarted.stdout, /tsserve started/);
  const keys = JSON.parse(readFileSync(join(project, 'key_file.json'), 'utf8')) as { inference: { key: string } };
  const answer = await fetch(`${urls.inference}/predictions/digits`, {
    method: 'PUT',
    body: seven,
    headers: { authorization: `Bearer ${keys.inference.key}` },
  });
  t.equal(answer.status, 200);
  t.equal((await answer.text()).trim(), '7');
  await sh('tsserve --stop', project, onPath);

  // A handler project type-checks against the package's own declarations.
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, types: [] },
      files: ['handler.ts'],
    }),
  );
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const typed = await run(process.execPath, [tsc, '-p', project], { cwd: project, env }).then(
    () => '',
    (err: { stdout: string }) => err.stdout,
  );
  t.equal(typed, '', 'no type errors');
});

/** The lines of the ```sh blocks of a README section, in order. */
function readmeBlocks(section: string): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n## ${section}\n`);
  const body = readme.slice(start + 1).split(/\n## /)[0]!;
  return [...body.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.trim().split('\n'));
}

/** The files git knows (committed or not), as a clone has them; nothing built, nothing installed. */
function copyRepository(to: string): void {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  for (const file of files.split('\0').filter(Boolean)) {
    if (!existsSync(join(ROOT, file))) continue;
    mkdirSync(dirname(join(to, file)), { recursive: true });
    cpSync(join(ROOT, file), join(to, file));
  }
}

/**
 * An empty project with a lockfile of the versions the repository's lockfile pins for tsserve's
 * production dependencies (onnxruntime comes inside the tarball), so that npm installs from its
 * cache what the repository tested.
 */
function writeUserProject(project: string, tarball: string): void {
  const repoLock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const manifest = JSON.parse(execFileSync('tar', ['-xzOf', join(project, tarball), 'package/package.json'], { encoding: 'utf8' })) as PackedManifest;
  const root = { name: 'user-project', version: '1.0.0', type: 'module', dependencies: { tsserve: `file:${tarball}` } };
  const packages: Record<string, unknown> = {
    '': root,
    'node_modules/tsserve': {
      ...pick(manifest, ['version', 'bundleDependencies', 'dependencies', 'peerDependencies', 'peerDependenciesMeta', 'bin', 'engines', 'os', 'cpu']),
      resolved: `file:${tarball}`,
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

/**
 * A newcomer's environment: this process's without what npm and CI set for the repository's own
 * install, with this file's Node.js first on PATH (npm beside it, when it has one), npm's cache
 * only, and a TMPDIR of the test's own (tsserve keeps its PID file there).
 */
function userEnvironment(tmp: string): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) && key !== 'ONNXRUNTIME_NODE_INSTALL'));
  return { ...env, PATH: `${dirname(process.execPath)}${delimiter}${env.PATH}`, TMPDIR: tmp, npm_config_offline: 'true' };
}

function pick(record: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => record[k] !== undefined).map((k) => [k, record[k]]));
}

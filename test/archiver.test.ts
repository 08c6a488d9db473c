// tsserve-archiver: torch-model-archiver's flags, TorchServe's manifest, its errors.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { MNIST_DIR, ROOT, tempDir } from './helpers.js';
import { runArchiver } from './unit/cli-main.js';

const ARCHIVER = join(ROOT, 'bin', 'tsserve-archiver.js');
const onnx = join(MNIST_DIR, 'mnist.onnx');
const handler = join(MNIST_DIR, 'mnist_handler.ts');

interface ManifestJson {
  createdOn: string;
  runtime: string;
  model: Record<string, string>;
  archiverVersion: string;
}

function manifestOf(mar: string): ManifestJson {
  return JSON.parse(execFileSync('unzip', ['-p', mar, 'MAR-INF/MANIFEST.json'], { encoding: 'utf8' })) as ManifestJson;
}

/** tsserve-archiver run by its main() in this process (test/unit/cli-main.ts), as a spawned one from `cwd` answers. */
const archive = runArchiver;

/** tsserve-archiver as a process of its own: what it writes to stderr, Node.js' own warnings included. */
function archiveSpawned(args: string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [ARCHIVER, ...args], { cwd, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('a .mar holds MAR-INF/MANIFEST.json in TorchServe layout, the model and the compiled handler', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'index_to_name.json'), '{"0": "zero"}');
  writeFileSync(join(dir, 'model-config.yaml'), 'batchSize: 4\n');
  const r = await archive(
    [
      '--model-name',
      'digits',
      '--version',
      '2.0',
      '--serialized-file',
      onnx,
      '--handler',
      handler,
      '--extra-files',
      join(dir, 'index_to_name.json'),
      '--config-file',
      join(dir, 'model-config.yaml'),
      '--export-path',
      dir,
    ],
    dir,
  );
  t.equal(r.status, 0, r.stderr);
  const listing = execFileSync('unzip', ['-l', join(dir, 'digits.mar')], { encoding: 'utf8' });
  for (const name of ['MAR-INF/MANIFEST.json', 'mnist.onnx', 'mnist_handler.ts', 'mnist_handler.js', 'index_to_name.json', 'model-config.yaml']) {
    t.match(listing, name, `unzip -l lists ${name}`);
  }
  const manifest = execFileSync('unzip', ['-p', join(dir, 'digits.mar'), 'MAR-INF/MANIFEST.json'], { encoding: 'utf8' });
  const parsed = JSON.parse(manifest) as ManifestJson;
  t.same(Object.keys(parsed), ['createdOn', 'runtime', 'model', 'archiverVersion'], 'top-level keys in order');
  t.same(Object.keys(parsed.model), ['modelName', 'serializedFile', 'handler', 'modelVersion', 'configFile'], 'model keys in order');
  t.same(parsed.model, {
    modelName: 'digits',
    serializedFile: 'mnist.onnx',
    handler: 'mnist_handler.ts',
    modelVersion: '2.0',
    configFile: 'model-config.yaml',
  });
  t.equal(parsed.runtime, 'python');
  t.equal(parsed.archiverVersion, '0.12.0');
  t.match(parsed.createdOn, /^\d{2}\/\d{2}\/\d{4} \d{2}:\d{2}:\d{2}$/);
  t.match(manifest, /^\{\n {2}"createdOn"/, 'two-space indentation');
});

t.test('a link in an --extra-files folder is archived as the files it points to, its TypeScript compiled', async (t) => {
  const dir = tempDir(t);
  const extra = join(dir, 'extra');
  const shared = join(dir, 'shared');
  mkdirSync(extra);
  mkdirSync(shared);
  writeFileSync(join(shared, 'util.ts'), 'export const answer: number = 42;\n');
  symlinkSync(shared, join(extra, 'lib'), 'dir');
  const formats: Array<[string, string[], string]> = [
    ['default', ['unzip', '-Z'], 'linked.mar'],
    ['tgz', ['tar', '-tvzf'], 'linked.tar.gz'],
  ];
  for (const [format, list, file] of formats) {
    const args = [
      '--model-name',
      'linked',
      '-v',
      '1',
      '--serialized-file',
      onnx,
      '--handler',
      handler,
      '--extra-files',
      extra,
      '--archive-format',
      format,
      '--force',
    ];
    t.equal((await archive(args, dir)).status, 0, format);
    const listing = execFileSync(list[0]!, [...list.slice(1), join(dir, file)], { encoding: 'utf8' });
    t.match(listing, /lib\/util\.ts/, `${format}: the linked folder's source`);
    t.match(listing, /lib\/util\.js/, `${format}: and its compiled module`);
    t.notMatch(listing, /^l/m, `${format}: no link entry`);
  }
});

t.test('a built-in handler is named, not copied; :function suffixes are kept', async (t) => {
  const dir = tempDir(t);
  t.equal((await archive(['--model-name', 'a', '-v', '1', '--serialized-file', onnx, '--handler', 'image_classifier'], dir)).status, 0);
  t.equal(manifestOf(join(dir, 'a.mar')).model.handler, 'image_classifier');
  t.equal((await archive(['--model-name', 'b', '-v', '1', '--handler', `${handler.replace(/\.ts$/, '')}:handle`], dir)).status, 0);
  t.equal(manifestOf(join(dir, 'b.mar')).model.handler, 'mnist_handler.ts:handle');
});

t.test('tgz and no-archive formats', async (t) => {
  const dir = tempDir(t);
  t.equal((await archive(['--model-name', 'm', '-v', '1', '--serialized-file', onnx, '--handler', handler, '--archive-format', 'tgz'], dir)).status, 0);
  const listing = execFileSync('tar', ['-tzf', join(dir, 'm.tar.gz')], { encoding: 'utf8' });
  t.match(listing, 'm/MAR-INF/MANIFEST.json', 'entries under <name>/');
  t.equal((await archive(['--model-name', 'm', '-v', '1', '--serialized-file', onnx, '--handler', handler, '--archive-format', 'no-archive'], dir)).status, 0);
  t.ok(existsSync(join(dir, 'm', 'MAR-INF', 'MANIFEST.json')), 'a plain directory');
});

t.test('clear errors: missing file, existing archive without --force, bad name, missing flag', async (t) => {
  const dir = tempDir(t);
  const missing = await archive(['--model-name', 'x', '-v', '1', '--serialized-file', join(dir, 'nope.onnx'), '--handler', handler], dir);
  t.equal(missing.status, 1);
  t.match(missing.stderr, `File does not exist: ${join(dir, 'nope.onnx')}`);

  t.equal((await archive(['--model-name', 'x', '-v', '1', '--handler', handler], dir)).status, 0);
  const again = await archive(['--model-name', 'x', '-v', '1', '--handler', handler], dir);
  t.equal(again.status, 1);
  t.match(again.stderr, 'already exists.\nPlease specify --force/-f option to overwrite the model archive output file.');
  t.equal((await archive(['--model-name', 'x', '-v', '1', '--handler', handler, '-f'], dir)).status, 0, '--force overwrites');

  const badName = await archive(['--model-name', '../x', '-v', '1', '--handler', handler], dir);
  t.equal(badName.status, 1);
  t.match(badName.stderr, 'Model name contains special characters.');

  const noVersion = await archive(['--model-name', 'x', '--handler', handler], dir);
  t.not(noVersion.status, 0);
  t.match(noVersion.stderr, "required option '-v, --version <version>' not specified");

  const badFormat = await archive(['--model-name', 'x', '-v', '1', '--handler', handler, '--archive-format', 'rar'], dir);
  t.not(badFormat.status, 0);
  t.match(badFormat.stderr, 'Allowed choices are default, zip-store, tgz, no-archive');
  t.same(readFileSync(join(dir, 'x.mar')).subarray(0, 2), Buffer.from('PK'), 'the good archive is untouched');
});

t.test('a mistyped built-in handler name is answered with the name it is nearest', async (t) => {
  const dir = tempDir(t);
  const typo = await archive(['--model-name', 'x', '-v', '1', '--serialized-file', onnx, '--handler', 'image_clasifier'], dir);
  t.equal(typo.status, 1);
  t.match(typo.stderr, 'File does not exist: ');
  t.match(typo.stderr, '(did you mean the built-in handler image_classifier?)');
  const path = await archive(['--model-name', 'x', '-v', '1', '--serialized-file', onnx, '--handler', './my_handler.ts'], dir);
  t.notMatch(path.stderr, 'did you mean', 'a path is not taken for a built-in name');
});

t.test('a missing export path is made with a plain notice, not a Node.js process warning', async (t) => {
  const dir = tempDir(t);
  const made = archiveSpawned(['--model-name', 'x', '-v', '1', '--handler', handler, '--export-path', 'store'], dir);
  t.equal(made.status, 0, made.stderr);
  t.equal(made.stderr, `Export path ${join(dir, 'store')} does not exist; creating it.\n`);
  t.ok(existsSync(join(dir, 'store', 'x.mar')));
});

t.test('archives are reproducible: the same inputs make the same bytes, with no temporary path inside', async (t) => {
  const dir = tempDir(t);
  const build = async (format: 'default' | 'tgz', out: string) => {
    const args = `--model-name m -v 1 --archive-format ${format} --export-path ${out}`.split(' ');
    const inputs = ['--serialized-file', onnx, '--handler', handler, '--extra-files', join(MNIST_DIR, 'digits')];
    const r = await archive([...args, ...inputs], dir, { SOURCE_DATE_EPOCH: '1796169600' });
    t.equal(r.status, 0, r.stderr);
    return readFileSync(join(out, format === 'tgz' ? 'm.tar.gz' : 'm.mar'));
  };
  const first = await build('default', join(dir, 'a'));
  await new Promise((resolve) => setTimeout(resolve, 2100)); // zip times have a resolution of 2 s
  t.ok(first.equals(await build('default', join(dir, 'b'))), 'byte for byte');
  t.equal(manifestOf(join(dir, 'a', 'm.mar')).createdOn.slice(0, 10), '02/12/2026', 'createdOn is SOURCE_DATE_EPOCH');
  const listing = execFileSync('unzip', ['-l', join(dir, 'a', 'm.mar')], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
  const dates = [...listing.matchAll(/ (\d{4}-\d\d-\d\d \d\d:\d\d) {3}\S+$/gm)].map((m) => m[1]);
  t.same(new Set(dates), new Set(['2026-12-02 00:00']), 'every entry carries that date');
  const contents = execFileSync('unzip', ['-p', join(dir, 'a', 'm.mar')], { maxBuffer: 1 << 24 }).toString('latin1');
  t.notMatch(contents, 'tsserve-archiver-', 'no temporary path inside');
  t.ok((await build('tgz', join(dir, 'c'))).equals(await build('tgz', join(dir, 'd'))), 'a .tar.gz too');
});

t.test('npm run models -- --force rebuilds the committed example archives byte for byte', async (t) => {
  const dir = tempDir(t);
  // mnist and nst are committed; ocr and vad are built at install and are as reproducible.
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-model-store.js'), '--force', '--export-path', dir, '--only', 'mnist,nst'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  t.equal(r.status, 0, r.stderr);
  for (const name of ['mnist', 'nst']) {
    t.ok(readFileSync(join(dir, `${name}.mar`)).equals(readFileSync(join(ROOT, 'model-store', `${name}.mar`))), `${name}.mar`);
  }
});

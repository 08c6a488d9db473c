#!/usr/bin/env node
// Builds the example archives of model-store/ from their sources with tsserve-archiver:
//   npm run models
// mnist.mar: examples/mnist (mnist.onnx from examples/mnist/train.py, mnist_handler.ts).
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const archiver = join(root, 'bin', 'tsserve-archiver.js');

const archives = [
  ['--model-name', 'mnist', '--version', '1.0', '--serialized-file', 'examples/mnist/mnist.onnx',
    '--handler', 'examples/mnist/mnist_handler.ts'],
];

for (const args of archives) {
  const out = execFileSync(process.execPath, [archiver, ...args, '--export-path', 'model-store', '--force'], { cwd: root, encoding: 'utf8' });
  process.stdout.write(out);
}

/**
 * @module archive/python-model
 * Recognises an archive made by torch-model-archiver for TorchServe's Python workers: a `.py`
 * handler, or a serialized file that is PyTorch's (TorchScript and `torch.save` write zips, older
 * `torch.save` a pickle) rather than ONNX. tsserve cannot run either, and a worker that tried
 * would only report "failed to start"; registration says so at once and names the way over.
 */
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';
import { splitHandler } from '../handler/builtins.js';
import type { ValidManifest } from './manifest.js';

/**
 * What makes the archive one for Python; none when tsserve can try it. Only the archive's own
 * handler counts: a `handler=x.py` register parameter on a servable archive registers and fails
 * when a worker starts, as TorchServe's own API tests expect of an invalid handler.
 */
export function pythonModelReasons(dir: string, manifest: ValidManifest): string[] {
  const reasons: string[] = [];
  const [handlerFile] = splitHandler(manifest.model.handler ?? '');
  if (handlerFile.endsWith('.py')) reasons.push(`its handler ${handlerFile} is Python code`);
  const serialized = manifest.model.serializedFile;
  if (serialized && isPyTorchFile(join(dir, serialized))) reasons.push(`${serialized} is a PyTorch file, not ONNX`);
  return reasons;
}

/** The advice that goes with the reasons, for the 400 a registration answers. */
export function pythonModelMessage(modelName: string, archive: string, reasons: readonly string[]): string {
  return (
    `Model "${modelName}" was built for TorchServe's Python workers (${reasons.join('; ')}). ` +
    `tsserve serves ONNX models with TypeScript or built-in handlers: convert it with \`tsserve-convert ${basename(archive)}\` (docs/migrating.md).`
  );
}

/** A zip (TorchScript, `torch.save` since 1.6) or a pickle (older `torch.save`). */
export function isPyTorchFile(path: string): boolean {
  if (!existsSync(path)) return false;
  const head = Buffer.alloc(4);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  const zip = head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
  const pickle = head[0] === 0x80 && head[1]! >= 2 && head[1]! <= 5;
  return zip || pickle;
}

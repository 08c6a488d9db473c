/**
 * @module convert/convert
 * What `tsserve-convert` does: a TorchServe archive in, a tsserve archive out. The PyTorch model
 * becomes ONNX (export_onnx.py, run by a Python that has torch), checked by running both on the
 * same seeded batch; the handler becomes the built-in of the same name, or the TypeScript port
 * the user gives; the archive's other files, version and model-config.yaml come along.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, parse, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { openModelArchive } from '../archive/extract.js';
import { readManifest, type ValidManifest } from '../archive/manifest.js';
import { isPyTorchFile } from '../archive/python-model.js';
import { ArchiverError, createArchive } from '../archive/write.js';
import { TsError } from '../errors.js';
import { isBuiltinHandler, splitHandler } from '../handler/builtins.js';

export interface ConvertOptions {
  /** The TorchServe archive: a .mar, a .tar.gz or a directory. */
  readonly archive: string;
  readonly exportPath?: string | undefined;
  readonly modelName?: string | undefined;
  /** A TypeScript or JavaScript port of the archive's Python handler, or a built-in's name. */
  readonly handler?: string | undefined;
  /** One input's shape without the batch axis, e.g. `3,224,224`. */
  readonly inputShape?: string | undefined;
  readonly python?: string | undefined;
  readonly force?: boolean | undefined;
  /** Told each step as it begins: the export runs PyTorch and can take a minute. */
  readonly progress?: ((step: string) => void) | undefined;
}

export interface ConvertResult {
  readonly output: string;
  readonly handler: string;
  /** Set when the model was exported from PyTorch: the largest difference from PyTorch's outputs. */
  readonly maxDifference: number | undefined;
}

export class ConvertError extends Error {}

/** The largest difference from PyTorch's outputs an exported model may show. */
const TOLERANCE = 1e-3;
const EXPORT_SCRIPT = fileURLToPath(new URL('../../../src/convert/export_onnx.py', import.meta.url));
/** Image handlers' input when the user gives none: TorchServe's 224 x 224 RGB crop. */
const IMAGE_INPUT = '3,224,224';

export async function convertArchive(opts: ConvertOptions, cwd: string = process.cwd()): Promise<ConvertResult> {
  const progress = opts.progress ?? ((): void => undefined);
  progress(`opening ${opts.archive}`);
  const opened = await openArchive(resolve(cwd, opts.archive));
  const work = mkdtempSync(join(tmpdir(), 'tsserve-convert-'));
  try {
    const manifest = readManifest(opened.dir);
    const handler = opts.handler ?? builtinFor(manifest);
    const model = manifest.model;
    if (!model.serializedFile) throw new ConvertError('The archive has no serialized file (the model) to convert.');
    const serialized = join(opened.dir, model.serializedFile);
    let onnx = serialized;
    let maxDifference: number | undefined;
    if (isPyTorchFile(serialized)) {
      onnx = join(work, `${parse(model.serializedFile).name}.onnx`);
      const shape = opts.inputShape ?? (handler.startsWith('image_') ? IMAGE_INPUT : undefined);
      if (!shape)
        throw new ConvertError(`Give --input-shape (one input's shape without the batch axis, e.g. ${IMAGE_INPUT}): handler ${handler} has no default.`);
      progress(`exporting ${model.serializedFile} to ONNX with PyTorch (${opts.python ?? 'python3'})`);
      exportOnnx(opts.python ?? 'python3', serialized, model.modelFile && join(opened.dir, model.modelFile), shape, onnx, work);
      progress("comparing the ONNX model's outputs with PyTorch's");
      maxDifference = await compareWithPyTorch(onnx, work);
    }
    progress('writing the tsserve archive');
    const output = createArchive(
      {
        modelName: opts.modelName ?? model.modelName ?? parse(opts.archive).name.replace(/\W/g, '_'),
        version: model.modelVersion,
        handler,
        serializedFile: onnx,
        extraFiles:
          carriedFiles(opened.dir, manifest)
            .map((f) => join(opened.dir, f))
            .join(',') || undefined,
        configFile: model.configFile && join(opened.dir, model.configFile),
        exportPath: opts.exportPath,
        force: opts.force,
      },
      cwd,
    );
    return { output, handler, maxDifference };
  } finally {
    rmSync(work, { recursive: true, force: true });
    if (opened.extracted) rmSync(opened.dir, { recursive: true, force: true });
  }
}

async function openArchive(path: string): Promise<{ dir: string; extracted: boolean }> {
  try {
    return await openModelArchive(path);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new ConvertError(`Cannot open ${path}: ${reason}`);
  }
}

/** TorchServe's default handlers have tsserve built-ins of the same name; a Python file needs a port. */
function builtinFor(manifest: ValidManifest): string {
  const handler = manifest.model.handler;
  if (!handler) throw new ConvertError('The archive names no handler; give one with --handler.');
  if (isBuiltinHandler(handler)) return handler;
  const [file] = splitHandler(handler);
  throw new ConvertError(
    `The archive's handler ${file} is Python code. Port it to TypeScript (docs/migrating.md maps TorchServe's ` +
      `handler API to tsserve's) and give the port with --handler my_handler.ts, or a built-in: --handler image_classifier.`,
  );
}

function exportOnnx(python: string, serialized: string, modelFile: string | undefined, shape: string, output: string, checkDir: string): void {
  const args = [EXPORT_SCRIPT, '--serialized', serialized, '--shape', shape, '--output', output, '--check-dir', checkDir];
  if (modelFile) args.push('--model-file', modelFile);
  const run = spawnSync(python, args, { encoding: 'utf8', timeout: 10 * 60_000 });
  if (run.error) {
    const missing = (run.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ConvertError(missing ? `${python} not found: give --python, a Python with torch` : `Export failed: ${run.error.message}`);
  }
  if (run.status !== 0) {
    const lines = run.stderr.trim().split('\n');
    throw new ConvertError(`Export to ONNX failed: ${lines[lines.length - 1] ?? `exit status ${run.status}`}`);
  }
}

/** Runs the ONNX model on the batch PyTorch ran, and answers the largest difference; too large throws. */
async function compareWithPyTorch(onnx: string, checkDir: string): Promise<number> {
  const shapes = JSON.parse(readFileSync(join(checkDir, 'check.json'), 'utf8')) as { input: number[]; outputs: number[][] };
  const session = await ort.InferenceSession.create(onnx);
  try {
    const input = new ort.Tensor('float32', floats(join(checkDir, 'input.bin')), shapes.input);
    const results = await session.run({ [session.inputNames[0]!]: input });
    let worst = 0;
    session.outputNames.forEach((name, i) => {
      const expected = floats(join(checkDir, `output-${i}.bin`));
      const actual = results[name]!.data as Float32Array;
      for (let j = 0; j < expected.length; j++) worst = Math.max(worst, Math.abs(actual[j]! - expected[j]!) / Math.max(1, Math.abs(expected[j]!)));
    });
    if (worst > TOLERANCE)
      throw new ConvertError(
        `The ONNX model's outputs differ from PyTorch's by up to ${worst.toExponential(2)} (more than ${TOLERANCE}); the export is not faithful.`,
      );
    return worst;
  } finally {
    await session.release();
  }
}

function floats(file: string): Float32Array {
  const bytes = readFileSync(file);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/**
 * The archive's own files besides those the conversion replaces: the manifest, the model and its
 * Python definition, the handler, the pip requirements, model-config.yaml (passed on as such), and
 * any other Python source, which no tsserve worker runs.
 */
function carriedFiles(dir: string, manifest: ValidManifest): string[] {
  const m = manifest.model;
  const replaced = new Set([
    'MAR-INF',
    'node_modules',
    m.serializedFile,
    m.modelFile,
    m.requirementsFile,
    m.configFile,
    m.handler && splitHandler(m.handler)[0],
  ]);
  return readdirSync(dir)
    .filter((f) => !replaced.has(f) && !f.endsWith('.py') && f !== '__pycache__')
    .sort();
}

/** An error the CLI prints as is: ours, the archiver's, or a bad manifest's. */
export function isConvertError(err: unknown): err is Error {
  return err instanceof ConvertError || err instanceof ArchiverError || err instanceof TsError;
}

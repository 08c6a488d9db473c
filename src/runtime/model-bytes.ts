/**
 * @module runtime/model-bytes
 * One copy of a model's weights for two sessions of it in one process (adaptiveThreads' narrow
 * and wide ones, runtime/onnx). Each session opened from the .onnx file holds the weights of its
 * own: resnet18's two took 118 MB PSS where one takes 66 (bench/memory.mjs). So the model is optimised
 * once (every graph optimisation, as a session from the file gets), saved in onnxruntime's own
 * format (ORT), and each session opens those bytes with no further optimisation and reads its
 * initializers in place from them (`session.use_ort_model_bytes_for_initializers`): the same
 * graph and answers, 70 MB for both sessions. It costs about 7% more CPU per run (the weights in
 * the file are not aligned as onnxruntime's own copies are) and a conversion at the start, so a
 * model opened once is opened from its file.
 *
 * The bytes are kept for the life of the process, for onnxruntime reads the weights from them on
 * every run; they are the weights, so this costs nothing while a session of the model is open.
 * A model the conversion does not take (an operator the ORT format lacks, no scratch folder this
 * process may write) is opened from its file as before.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';

/** Converted models, by file and version of it (path, size, mtime). */
const converted = new Map<string, Promise<Uint8Array | undefined>>();

/** onnxruntime's log level "error": the conversion's warning that NCHWc ties the result to this CPU is what we want. */
const ERRORS_ONLY = 3;

/**
 * The model at `modelPath` optimised and in ORT format, converted at the first call for each
 * version of the file and shared by every later one; undefined if it cannot be converted.
 */
export function optimizedModelBytes(modelPath: string): Promise<Uint8Array | undefined> {
  const path = resolve(modelPath);
  const key = fileVersion(path);
  if (key === undefined) return Promise.resolve(undefined);
  let bytes = converted.get(key);
  if (bytes === undefined) {
    bytes = convert(path);
    converted.set(key, bytes);
  }
  return bytes;
}

function fileVersion(path: string): string | undefined {
  try {
    const { size, mtimeMs } = statSync(path);
    return `${path}\0${size}\0${mtimeMs}`;
  } catch {
    return undefined;
  }
}

/** Optimises the model into a scratch folder and reads the result back; the folder goes at once. */
async function convert(path: string): Promise<Uint8Array | undefined> {
  const scratch = scratchFolder(path);
  if (scratch === undefined) return undefined;
  try {
    const out = join(scratch, 'model.ort');
    const session = await ort.InferenceSession.create(path, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      optimizedModelFilePath: out,
      logSeverityLevel: ERRORS_ONLY,
      extra: { session: { save_model_format: 'ORT', intra_op: { allow_spinning: '0' } } },
    });
    await session.release();
    return new Uint8Array(readFileSync(out));
  } catch {
    return undefined;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * A new folder for the conversion: in the temporary folder, or beside the model when the worker
 * runs under Node's permission model (worker_permission), which lets it write only there.
 */
function scratchFolder(modelPath: string): string | undefined {
  for (const parent of [tmpdir(), dirname(modelPath)]) {
    if (!mayWrite(parent)) continue;
    try {
      return mkdtempSync(join(parent, '.tsserve-ort-'));
    } catch {
      /* the next one */
    }
  }
  return undefined;
}

function mayWrite(folder: string): boolean {
  const permission = process.permission;
  return permission === undefined || (permission.has('fs.write', folder) && permission.has('fs.read', folder));
}

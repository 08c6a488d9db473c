/**
 * @module worker/entry
 * The program a worker process runs. It loads one model's handler, then answers one batch at a
 * time, in the order the batches came: the front end may send the next batch while this one runs,
 * so that it is here when this one ends, but handlers see one batch at a time, as in TorchServe.
 * The front end owns every decision (batching, timeouts, restarts); this side only runs
 * handler code, so a handler that crashes, hangs or eats memory takes down this process alone.
 *
 *   front end ──load──▶ entry: import handler, initialize(context) ──loaded / load-failed──▶
 *   front end ──predict(batch)──▶ runBatch ──intermediate*──▶ ──reply / batch-failed──▶
 */
import { existsSync, readFileSync } from 'node:fs';
import { register } from 'node:module';
import { join } from 'node:path';
import type { ModelFacts } from '../handler/context.js';
import { BatchContext } from '../handler/context.js';
import { uncompiledTypeScript } from '../handler/compile.js';
import { setImagePixelLimit } from '../handler/image-limit.js';
import { loadEntryPoint, type EntryPoint } from '../handler/load.js';
import { ENVELOPES, isEnvelope, withEnvelope, type Envelope } from '../handler/envelope.js';
import { runBatch, toWireError } from '../handler/run.js';
import { PredictionError } from '../handler/types.js';
import { inBatch, sessionsBatchLimit } from '../runtime/onnx.js';
import { isTsError, tsError } from '../errors.js';
import { existingInside } from '../archive/inside.js';
import { watchParent } from './parent-watch.js';
import { WATCH_PARENT_ENV, type FromWorker, type LoadMessage, type PredictMessage, type ToWorker, type WireRequest } from '../protocol/messages.js';

let entry: EntryPoint | undefined;
let facts: ModelFacts | undefined;
let decodeInput = true;
let maxResponseSize = Number.POSITIVE_INFINITY;

function withCause(error: Error, cause: unknown): Error {
  error.cause = cause;
  return error;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function send(message: FromWorker): void {
  process.send?.(message);
}

async function onLoad(msg: LoadMessage): Promise<void> {
  try {
    const modelFacts: ModelFacts = {
      modelName: msg.modelName,
      manifest: msg.manifest,
      modelYamlConfig: msg.yamlConfig,
      sequenceIdHeader: msg.sequenceIdHeader,
      systemProperties: {
        model_dir: msg.modelDir,
        gpu_id: null,
        batch_size: msg.batchSize,
        server_name: 'MMS',
        server_version: msg.serverVersion,
        limit_max_image_pixels: msg.limitMaxImagePixels,
      },
    };
    facts = modelFacts;
    decodeInput = msg.decodeInput;
    maxResponseSize = msg.maxResponseSize;
    setImagePixelLimit(msg.limitMaxImagePixels);
    process.chdir(msg.modelDir);
    if (needsModuleHooks(msg.modelDir)) register('./hooks.js', import.meta.url);
    const envelope = envelopeOf(msg.envelope);
    const handler = await loadEntryPoint(msg.handler, msg.modelDir).catch((err: unknown) => {
      throw withCause(tsError('TSS_ERR_WORKER_HANDLER_IMPORT', msg.handler, messageOf(err)), err);
    });
    entry = withEnvelope(handler, envelope);
    await entry.initialize(new BatchContext(modelFacts, [])).catch((err: unknown) => {
      throw withCause(tsError('TSS_ERR_WORKER_INITIALIZE', messageOf(err)), err);
    });
    await warmUp(msg);
    const batchLimit = sessionsBatchLimit();
    send(batchLimit === undefined ? { kind: 'loaded', pid: process.pid } : { kind: 'loaded', pid: process.pid, batchLimit });
  } catch (err) {
    const e = isTsError(err) ? err : tsError('TSS_ERR_INTERNAL', messageOf(err));
    // The reason in one line, then where the handler's own code failed, for its author.
    console.error(`Failed to load model ${msg.modelName}: ${e.message}`);
    console.error(e.cause ?? err);
    send({ kind: 'load-failed', error: { code: e.code, message: e.message, status: e.status } });
  }
}

async function onPredict(msg: PredictMessage): Promise<void> {
  const { batchId } = msg;
  if (!entry || !facts) {
    send({ kind: 'batch-failed', batchId, error: { code: 'TSS_ERR_WORKER_DIED', message: 'Worker died.', status: 500 }, metrics: [] });
    return;
  }
  let context: BatchContext | undefined;
  const began = performance.now();
  try {
    const result = await inBatch(msg.wide, () =>
      runBatch(entry!, facts!, msg.requests, decodeInput, (items) => send({ kind: 'intermediate', batchId, items }), maxResponseSize),
    );
    context = result.context;
    send({ kind: 'reply', batchId, items: result.items, metrics: context.collectedMetrics, workMs: performance.now() - began });
  } catch (err) {
    logFailure(facts.modelName, err);
    send({ kind: 'batch-failed', batchId, error: toWireError(err), metrics: context?.collectedMetrics ?? [] });
  }
}

/**
 * The model-config.yaml's `warmupFile` (tsserve's own key: a file in the archive, sent as
 * `curl -T file` sends it) runs through the handler before the worker says it is loaded: once
 * alone, then as the largest batch the model takes, again and again for up to WARMUP_BATCHES or
 * WARMUP_BUDGET_MS. The first requests after a start then find onnxruntime's memory and the
 * handler's code already warm, instead of paying for them. A sample the handler refuses is the
 * archive's mistake: said in the model log, and the worker serves.
 */
async function warmUp(msg: LoadMessage): Promise<void> {
  const name = msg.yamlConfig.warmupFile;
  const handler = entry;
  const modelFacts = facts;
  if (typeof name !== 'string' || !handler || !modelFacts) return;
  const path = existingInside(msg.modelDir, name);
  if (!path) {
    console.error(`Warm-up skipped for model ${msg.modelName}: warmupFile ${JSON.stringify(name)} is not a file in the archive`);
    return;
  }
  const body = readFileSync(path);
  const sample = (i: number): WireRequest => ({ id: `warmup-${i}`, headers: {}, params: [{ name: 'body', contentType: undefined, value: body }] });
  const batchOf = (size: number): Promise<unknown> =>
    runBatch(
      handler,
      modelFacts,
      Array.from({ length: size }, (_, i) => sample(i)),
      decodeInput,
      () => undefined,
    );
  const started = performance.now();
  let batches = 0;
  try {
    for (const size of new Set([1, msg.largestBatch])) {
      await batchOf(size);
      batches++;
    }
    while (batches < WARMUP_BATCHES && performance.now() - started < WARMUP_BUDGET_MS) {
      await batchOf(msg.largestBatch);
      batches++;
    }
    console.log(`Warm-up of model ${msg.modelName} with ${name}: ${batches} batches in ${Math.round(performance.now() - started)} ms`);
  } catch (err) {
    console.error(`Warm-up failed for model ${msg.modelName} with ${name}: ${(err as Error).message}`);
  }
}

/**
 * How long a warm-up runs. A handler's JavaScript (mnist's PNG decoding) reaches V8's optimising
 * compiler only after thousands of calls, and until then a worker answers at a fraction of its
 * speed: with two batches of warm-up, about 0.8x of mnist's capacity offered right after
 * `--start` was refused 6-30%; with 400 (0.8 s here) 3-12%, with 100 4-18% (docs/performance.md). A model
 * whose batch takes long (ResNet-18, ~100 ms) stops at the time budget after a few batches,
 * which is all its onnxruntime needs.
 */
const WARMUP_BATCHES = 400;
const WARMUP_BUDGET_MS = 1000;

/**
 * A client's error (a PredictionError under 500: a corrupt image, a wrong field) is one line; a
 * failure of the handler or the runtime keeps its stack, which is what its author needs.
 */
function logFailure(modelName: string, err: unknown): void {
  if (err instanceof PredictionError && err.status < 500) console.error(`Prediction refused for model ${modelName}: ${err.status} ${err.message}`);
  else console.error(`Prediction failed for model ${modelName}:`, err);
}

/**
 * Module hooks (worker/hooks.ts) run on a thread of their own, 13 MB per worker, so they are
 * registered only when the model needs them: a directory without the `node_modules` links an
 * extracted archive gets (archive/link-packages.ts), or TypeScript without its compiled `.js`.
 */
function needsModuleHooks(modelDir: string): boolean {
  return !existsSync(join(modelDir, 'node_modules')) || uncompiledTypeScript(modelDir).length > 0;
}

/** The request envelope named by service_envelope or the manifest; none when unnamed. */
function envelopeOf(name: string | undefined): Envelope | undefined {
  if (name === undefined || name === '') return undefined;
  if (isEnvelope(name)) return name;
  throw tsError('TSS_ERR_WORKER_ENVELOPE', name, ENVELOPES.join(', '));
}

let previousBatch = Promise.resolve();
process.on('message', (msg: ToWorker) => {
  if (msg.kind === 'load') void onLoad(msg);
  else previousBatch = previousBatch.then(() => onPredict(msg));
});
// The front end is gone: nobody can use our answers. A busy worker does not see this; the
// parent-death signal or the watch (worker/parent-watch.ts) ends it then.
process.on('disconnect', () => process.exit(0));
if (process.env[WATCH_PARENT_ENV]) watchParent();

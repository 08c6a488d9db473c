/**
 * @module worker/entry
 * The program a worker process runs. It loads a model's handler, then answers one batch at a
 * time, in the order the batches came: the front end may send the next batch while this one runs,
 * so that it is here when this one ends, but handlers see one batch at a time, as in TorchServe.
 * The front end owns every decision (batching, timeouts, restarts); this side only runs
 * handler code, so a handler that crashes, hangs or eats memory takes down this process alone.
 *
 * Every message names its model by a key (a worker's id). A process started for one worker
 * serves one key; a shared host (workers/worker-host.ts) serves several, each with its own
 * handler, sessions and order of batches, and drops one on `unload` (its sessions closed).
 *
 *   front end ──load──▶ entry: import handler, initialize(context) ──loaded / load-failed──▶
 *   front end ──predict(batch)──▶ answerBatch ──intermediate*──▶ ──reply / batch-failed──▶
 *   front end ──unload──▶ (after the key's batches) release its sessions ──unloaded──▶
 */
// First: nextTick's fast path, before any collection can have run (tick-maps.ts).
import '../tick-maps.js';
import { existsSync, readFileSync } from 'node:fs';
import { register } from 'node:module';
import { join } from 'node:path';
import type { ModelFacts } from '../handler/context.js';
import { BatchContext } from '../handler/context.js';
import { uncompiledTypeScript } from '../handler/compile.js';
import { setImagePixelLimit } from '../handler/image-limit.js';
import { loadEntryPoint, type EntryPoint } from '../handler/load.js';
import { ENVELOPES, isEnvelope, withEnvelope, type Envelope } from '../handler/envelope.js';
import { answerBatch, runBatch, toWireError } from '../handler/run.js';
import { PredictionError } from '../handler/types.js';
import { inBatch, ownedBy, sessionsBatchLimit, type SessionSet } from '../runtime/onnx.js';
import { isTsError, tsError } from '../errors.js';
import { existingInside } from '../archive/inside.js';
import { endGroupWithWorker, watchParent } from './parent-watch.js';
import {
  SHARED_HOST_ENV,
  WATCH_PARENT_ENV,
  type FromWorker,
  type LoadMessage,
  type PredictMessage,
  type ToWorker,
  type UnloadMessage,
  type WireRequest,
  type WireStage,
} from '../protocol/messages.js';

/** One model served here: its handler, once loaded, and the sessions it opened. */
interface Served {
  readonly key: string;
  entry: EntryPoint | undefined;
  facts: ModelFacts | undefined;
  decodeInput: boolean;
  maxResponseSize: number;
  responseTimeoutMs: number | undefined;
  readonly sessions: SessionSet;
  /** The key's messages in turn: its load, its batches in the order they came, its unload. */
  turn: Promise<void>;
}

const served = new Map<string, Served>();
/** A shared host: several models' directories, none of them the process's own. */
const shared = process.env[SHARED_HOST_ENV] !== undefined;
let hooksRegistered = false;

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

async function onLoad(msg: LoadMessage, model: Served): Promise<void> {
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
    model.facts = modelFacts;
    model.decodeInput = msg.decodeInput;
    model.maxResponseSize = msg.maxResponseSize;
    model.responseTimeoutMs = msg.responseTimeoutMs;
    setImagePixelLimit(msg.limitMaxImagePixels);
    if (!shared) process.chdir(msg.modelDir);
    registerHooksFor(msg.modelDir);
    const envelope = envelopeOf(msg.envelope);
    const handler = await loadEntryPoint(msg.handler, msg.modelDir).catch((err: unknown) => {
      throw withCause(tsError('TSS_ERR_WORKER_HANDLER_IMPORT', msg.handler, messageOf(err)), err);
    });
    const entry = withEnvelope(handler, envelope);
    model.entry = entry;
    await ownedBy(model.sessions, () => entry.initialize(new BatchContext(modelFacts, []))).catch((err: unknown) => {
      throw withCause(tsError('TSS_ERR_WORKER_INITIALIZE', messageOf(err)), err);
    });
    await ownedBy(model.sessions, () => warmUp(msg, handler, model, sessionsBatchLimit(model.sessions)));
    const batchLimit = sessionsBatchLimit(model.sessions);
    send(batchLimit === undefined ? { key: model.key, kind: 'loaded', pid: process.pid } : { key: model.key, kind: 'loaded', pid: process.pid, batchLimit });
  } catch (err) {
    model.entry = undefined;
    const e = isTsError(err) ? err : tsError('TSS_ERR_INTERNAL', messageOf(err));
    // The reason in one line, then where the handler's own code failed, for its author.
    console.error(`Failed to load model ${msg.modelName}: ${e.message}`);
    console.error(e.cause ?? err);
    send({ key: model.key, kind: 'load-failed', error: { code: e.code, message: e.message, status: e.status } });
  }
}

async function onPredict(msg: PredictMessage, model: Served | undefined): Promise<void> {
  const { batchId, key } = msg;
  const entry = model?.entry;
  const facts = model?.facts;
  if (!model || !entry || !facts) {
    send({ key, kind: 'batch-failed', batchId, error: { code: 'TSS_ERR_WORKER_DIED', message: 'Worker died.', status: 500 }, metrics: [], stages: [] });
    return;
  }
  const stages: WireStage[] = [];
  const began = performance.now();
  try {
    const result = await ownedBy(model.sessions, () =>
      inBatch(msg.wide, () =>
        answerBatch(entry, facts, msg.requests, model.decodeInput, (items) => send({ key, kind: 'intermediate', batchId, items }), {
          maxResponseSize: model.maxResponseSize,
          stages,
          trace: msg.trace,
          budgetMs: model.responseTimeoutMs,
          onFailure: (err) => logFailure(facts.modelName, err),
        }),
      ),
    );
    const workMs = result.split ? undefined : performance.now() - began;
    send({ key, kind: 'reply', batchId, items: result.items, metrics: result.metrics, ...(workMs !== undefined && { workMs }), stages });
  } catch (err) {
    logFailure(facts.modelName, err);
    send({ key, kind: 'batch-failed', batchId, error: toWireError(err), metrics: [], stages });
  }
}

/**
 * Drops the model after its batches sent so far: its sessions are closed now, so their memory
 * goes back at once, not when the garbage collector finds them. Its handler's module stays in
 * Node's module cache (a module cannot be unloaded): a model loaded again here finds its module
 * state as it left it.
 */
async function onUnload(msg: UnloadMessage, model: Served | undefined): Promise<void> {
  served.delete(msg.key);
  if (model) {
    model.entry = undefined;
    await Promise.allSettled([...model.sessions].map((s) => s.release()));
    model.sessions.clear();
  }
  send({ key: msg.key, kind: 'unloaded' });
}

/**
 * The model-config.yaml's `warmupFile` (tsserve's own key: a file in the archive, sent as
 * `curl -T file` sends it) runs through the handler before the worker says it is loaded: once
 * alone, then as the largest batch the model takes, again and again for up to WARMUP_BATCHES or
 * WARMUP_BUDGET_MS. The first requests after a start then find onnxruntime's memory and the
 * handler's code already warm, instead of paying for them. A sample the handler refuses is the
 * archive's mistake: said in the model log, and the worker serves. In a shared host only the
 * batch of one runs: a model loads there on demand, while its first request waits, and a load's
 * CPU takes the machine's cores from the busy models in other hosts; the batch of 8 was a quarter
 * of an mnist load's (3 of 12 CPU-ms), for a batch a model loaded on demand seldom gets.
 * `batchLimit`: its sessions' fixed batch dimension, which caps the largest batch (a model
 * exported with batch 1 failed its first batch of 8 and went unwarmed). The sample goes to the
 * `handler` itself, not through a service envelope: under KServe's (`kservev2`) a raw sample was
 * each time the envelope's 400 and the handler never ran, 400 "batches" warming nothing.
 */
async function warmUp(msg: LoadMessage, handler: EntryPoint, model: Served, batchLimit: number | undefined): Promise<void> {
  const name = msg.yamlConfig.warmupFile;
  const modelFacts = model.facts;
  if (typeof name !== 'string' || !modelFacts) return;
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
      model.decodeInput,
      () => undefined,
    );
  const largest = Math.min(msg.largestBatch, batchLimit ?? msg.largestBatch);
  const started = performance.now();
  let batches = 0;
  try {
    for (const size of shared ? [1] : new Set([1, largest])) {
      await batchOf(size);
      batches++;
    }
    while (!shared && batches < WARMUP_BATCHES && performance.now() - started < WARMUP_BUDGET_MS) {
      await batchOf(largest);
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
 * registered only when a model needs them (once a process): a directory without the
 * `node_modules` links an extracted archive gets (archive/link-packages.ts), or TypeScript
 * without its compiled `.js`.
 */
function registerHooksFor(modelDir: string): void {
  if (hooksRegistered || !needsModuleHooks(modelDir)) return;
  register('./hooks.js', import.meta.url);
  hooksRegistered = true;
}

function needsModuleHooks(modelDir: string): boolean {
  return !existsSync(join(modelDir, 'node_modules')) || uncompiledTypeScript(modelDir).length > 0;
}

/** The request envelope named by service_envelope or the manifest; none when unnamed. */
function envelopeOf(name: string | undefined): Envelope | undefined {
  if (name === undefined || name === '') return undefined;
  if (isEnvelope(name)) return name;
  throw tsError('TSS_ERR_WORKER_ENVELOPE', name, ENVELOPES.join(', '));
}

/** What a message does to its key's model, after the key's earlier messages. */
function handle(msg: ToWorker, model: Served | undefined): Promise<void> {
  if (msg.kind === 'load') return model ? onLoad(msg, model) : Promise.resolve();
  if (msg.kind === 'predict') return onPredict(msg, model);
  return onUnload(msg, model);
}

/** The key's model; a load makes it. */
function servedFor(msg: ToWorker): Served | undefined {
  let model = served.get(msg.key);
  if (!model && msg.kind === 'load') {
    model = {
      key: msg.key,
      entry: undefined,
      facts: undefined,
      decodeInput: true,
      maxResponseSize: Number.POSITIVE_INFINITY,
      responseTimeoutMs: undefined,
      sessions: new Set(),
      turn: Promise.resolve(),
    };
    served.set(msg.key, model);
  }
  return model;
}

/** Messages of a key that has none in turn (an unknown key's) run at once, each alone. */
process.on('message', (msg: ToWorker) => {
  const model = servedFor(msg);
  if (!model) {
    void handle(msg, undefined);
    return;
  }
  model.turn = model.turn.then(() => handle(msg, model));
});
// The front end is gone: nobody can use our answers. A busy worker does not see this; the
// parent-death signal or the watch (worker/parent-watch.ts) ends it then.
process.on('disconnect', () => process.exit(0));
if (process.env[WATCH_PARENT_ENV]) watchParent();
endGroupWithWorker();

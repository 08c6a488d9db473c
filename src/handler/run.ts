/**
 * @module handler/run
 * One batch through a handler: decode each request's parameters as TorchServe's worker does, call
 * the entry point, check that a list of the same length came back, and turn each answer into
 * bytes. Anything wrong becomes a coded error for the whole batch, never a crashed worker; a
 * batch a handler refuses for a client's error has each of its requests run alone, or, refused
 * for inputs it names, the others run again together (answerBatch).
 */
import { errorFromWire, isTsError, shortened, type TsError, tsError } from '../errors.js';
import { AnswerBudget, answerBytes, DEFAULT_CONTENT_TYPES, responseTooLarge, STREAM_NEXT } from '../protocol/answer-size.js';
import type { WireError, WireMetric, WireParam, WireRequest, WireResponse, WireStage, WireTraceContext } from '../protocol/messages.js';
import { BatchContext, epochMs, type ModelFacts } from './context.js';
import type { EntryPoint } from './load.js';
import { InputErrors, PredictionError, type HandlerOutput, type InputValue, type RequestInput } from './types.js';
import { UnreadRequests } from './unread.js';

export interface BatchResult {
  readonly items: WireResponse[];
  readonly context: BatchContext;
}

export function decodeRequest(request: WireRequest, decode: boolean): RequestInput {
  const input: RequestInput = {};
  // Parameters with the same name collapse to the last one, as in TorchServe's worker.
  for (const param of request.params) input[param.name] = decodeParam(param, decode);
  return input;
}

function decodeParam(param: WireParam, decode: boolean): InputValue {
  const bytes = Buffer.from(param.value.buffer, param.value.byteOffset, param.value.byteLength);
  if (!decode) return bytes;
  if (param.contentType === 'application/json') {
    try {
      return JSON.parse(bytes.toString('utf8')) as InputValue;
    } catch {
      return bytes;
    }
  }
  if (param.contentType?.startsWith('text')) return bytes.toString('utf8');
  return bytes;
}

/** What a batch may carry besides its requests. */
export interface BatchOptions {
  /** An answer that would take its request past it (with the parts streamed before) fails its request instead. */
  readonly maxResponseSize?: number;
  /** Receives the batch's stages, also when it fails. */
  readonly stages?: WireStage[];
  /** The batch's span when traced: the handler's context.traceparent. */
  readonly trace?: WireTraceContext;
}

/**
 * Runs the batch. The batch's stages are a BaseHandler's three, or, from a handler that
 * overrides `handle` as a whole, the entry point's call as `inference`.
 */
export async function runBatch(
  entry: EntryPoint,
  facts: ModelFacts,
  requests: WireRequest[],
  decode: boolean,
  onIntermediate: (items: WireResponse[]) => void,
  { maxResponseSize = Number.POSITIVE_INFINITY, stages = [], trace }: BatchOptions = {},
): Promise<BatchResult> {
  const budget = new AnswerBudget(maxResponseSize);
  const context: BatchContext = new BatchContext(
    facts,
    requests,
    (outputs) => {
      onIntermediate(toResponses(checkOutputs(outputs, requests.length), requests, context, budget, true));
    },
    stages,
    trace,
  );
  const started = epochMs();
  const batch = requests.map((r) => decodeRequest(r, decode));
  let outputs: unknown;
  try {
    outputs = await entry.handle(batch, context);
  } catch (err) {
    throw err instanceof InputErrors ? namedIn(err, batch) : err;
  } finally {
    if (stages.length === 0) stages.push({ name: 'inference', start: started, end: epochMs() });
  }
  // TorchServe's worker times the entry point for every model, whatever its handler records.
  context.metrics.addTime('PredictionTime', Math.round((epochMs() - started) * 100) / 100);
  return { items: toResponses(checkOutputs(outputs, requests.length), requests, context, budget, false), context };
}

/** A batch's answers, and the metrics its handler emitted. */
export interface BatchAnswer {
  readonly items: WireResponse[];
  readonly metrics: WireMetric[];
  /** Refused as a batch, its requests ran each alone: its time is no batch's of its size. */
  readonly split: boolean;
}

/** What answerBatch needs besides runBatch's options. */
export interface AnswerOptions extends BatchOptions {
  /** The batch's response timeout: requests are run alone only in its first half. */
  readonly budgetMs?: number;
  /** Told of each request refused alone (the batch's own failure is thrown). */
  readonly onFailure?: (err: unknown) => void;
}

/**
 * Runs the batch; when the handler refuses it with a client's error (a 4xx), each of its requests
 * runs alone, so that one client's bad input does not fail the others' requests: each gets its
 * own answer, the valid ones theirs and the bad ones their own 400. A 4xx says the handler refused
 * an input before running the model (a PredictionError's meaning), so the requests run again as
 * if for the first time; a 5xx is not run again, the model may have run. A refusal that names its
 * requests (eachInput's InputErrors: the built-in handlers read every input) needs no run alone:
 * those get their own errors at once and the others run again as one batch. The batch's stages
 * stay, counted for no request (WireStage.requests), the runs' after it each for their own.
 */
export async function answerBatch(
  entry: EntryPoint,
  facts: ModelFacts,
  requests: WireRequest[],
  decode: boolean,
  onIntermediate: (items: WireResponse[]) => void,
  options: AnswerOptions = {},
): Promise<BatchAnswer> {
  return answerUntil(entry, facts, requests, decode, onIntermediate, options, performance.now() + (options.budgetMs ?? Number.POSITIVE_INFINITY) / 2);
}

/** answerBatch, its runs after a refusal starting only if they may end by `until`. */
async function answerUntil(
  entry: EntryPoint,
  facts: ModelFacts,
  requests: WireRequest[],
  decode: boolean,
  onIntermediate: (items: WireResponse[]) => void,
  options: AnswerOptions,
  until: number,
): Promise<BatchAnswer> {
  const began = performance.now();
  const stages = options.stages ?? [];
  let streamed = false;
  const streaming = (items: WireResponse[]): void => {
    streamed = true;
    onIntermediate(items);
  };
  try {
    const { items, context } = await runBatch(entry, facts, requests, decode, streaming, { ...options, stages });
    return { items, metrics: context.collectedMetrics, split: false };
  } catch (err) {
    const once = isSequenceModel(facts) && !(err instanceof UnreadRequests);
    if (requests.length < 2 || streamed || !isClientError(err) || (once && !(err instanceof InputErrors))) throw err;
    stages.splice(0, stages.length, ...stages.map((s) => ({ ...s, requests: 0 })));
    // A stateful model's requests the refusal named get their own errors, the others are not run again (review-15 F4).
    const rerun: Rerun = {
      entry,
      facts,
      decode,
      onIntermediate,
      options: { ...options, stages },
      until: once ? Number.NEGATIVE_INFINITY : until,
      expectedMs: performance.now() - began,
      notAgain: once ? "a stateful model's requests are not run again" : 'too little of the response timeout was left to run it again',
    };
    if (err instanceof InputErrors) return runWithout(rerun, requests, err);
    return runEachAlone(rerun, requests, err);
  }
}

/** What the runs after a refused batch share: its handler and options, and its time (`until`; `expectedMs`, the refused run's). */
interface Rerun {
  readonly entry: EntryPoint;
  readonly facts: ModelFacts;
  readonly decode: boolean;
  readonly onIntermediate: (items: WireResponse[]) => void;
  readonly options: AnswerOptions & { readonly stages: WireStage[] };
  readonly until: number;
  readonly expectedMs: number;
  /** Why a request left over is not run again, as its 503 says it (notRunAgain). */
  readonly notAgain: string;
}

/**
 * The requests the handler refused each for itself answered with their own errors at once (an
 * intermediate message: an answer with an error is final there), the others run again as one
 * batch (answered as any batch is: refused again, by its own refusal) if it may end by `until`
 * taking as long as the refused batch did; past that they are not run (notRunAgain).
 */
async function runWithout(
  { entry, facts, decode, onIntermediate, options, until, expectedMs, notAgain }: Rerun,
  requests: WireRequest[],
  refused: InputErrors,
): Promise<BatchAnswer> {
  for (const err of refused.errors.values()) options.onFailure?.(err);
  const own = requests.map((r, i) => {
    const err = refused.errors.get(i);
    return err === undefined ? undefined : failedResponse(r.id, toWireError(err));
  });
  // Their answers leave now, not with the others': a re-run that outlived the response timeout had
  // the worker killed, and their 400s went with it (review-13 F6).
  onIntermediate(own.filter((answer) => answer !== undefined));
  const rest = requests.filter((_, i) => own[i] === undefined);
  // Whose inputs were refused is known, and each was answered: the rest get no client's message.
  const notRun = notRunAgain("for other requests' inputs, each answered with its own error", notAgain, '');
  let answers: BatchAnswer = { items: rest.map((r) => failedResponse(r.id, notRun)), metrics: [], split: true };
  if (rest.length > 0 && performance.now() + expectedMs <= until) {
    const stages: WireStage[] = [];
    try {
      answers = await answerUntil(entry, facts, rest, decode, onIntermediate, { ...options, stages }, until);
    } catch (err) {
      options.onFailure?.(err);
      answers = { items: rest.map((r) => failedResponse(r.id, toWireError(err))), metrics: [], split: true };
    } finally {
      options.stages.push(...stages.map((s) => ({ ...s, requests: s.requests ?? rest.length })));
    }
  }
  const others = answers.items.values();
  return { items: requests.map((_, i) => own[i] ?? others.next().value!), metrics: answers.metrics, split: true };
}

/**
 * Each request as a batch of its own while the batch's time lasts: one starts only if it may end
 * by `until` (half the response timeout) taking as long as the longest run yet, the refused batch's
 * included (`expectedMs`); past that the rest are not run (notRunAgain). The response
 * timeout is the batch's, not each request's, and a lone run that ran past it had the worker
 * killed and every request of the batch lost (review-9 F2: a batch refused in 900 ms of a 2 s
 * timeout, then a request alone of 1.3 s). Each answer leaves as its run ends (an intermediate
 * message, `final`): one that waited for the batch's end went with the worker when a later run
 * outlived the timeout all the same (review-14 F2).
 */
async function runEachAlone(
  { entry, facts, decode, onIntermediate, options, until, expectedMs, notAgain }: Rerun,
  requests: WireRequest[],
  refusal: unknown,
): Promise<BatchAnswer> {
  const items: WireResponse[] = [];
  const metrics: WireMetric[] = [];
  let longestMs = expectedMs;
  let notRun: WireError | undefined;
  for (const request of requests) {
    const began = performance.now();
    if (began + longestMs > until) {
      notRun ??= notRunAgain(`with a client's error that names no request (${quoted(refusal)})`, notAgain, unlessOwn);
      items.push(failedResponse(request.id, notRun));
      continue;
    }
    const own: WireStage[] = [];
    try {
      const alone = await runBatch(entry, facts, [request], decode, onIntermediate, { ...options, stages: own });
      onIntermediate(alone.items.map((item) => ({ ...item, final: true })));
      items.push(...alone.items);
      metrics.push(...alone.context.collectedMetrics);
    } catch (err) {
      options.onFailure?.(err);
      const failed = failedResponse(request.id, toWireError(err));
      onIntermediate([failed]);
      items.push(failed);
    } finally {
      options.stages.push(...own.map((s) => ({ ...s, requests: 1 })));
      longestMs = Math.max(longestMs, performance.now() - began);
    }
  }
  return { items, metrics, split: true };
}

/**
 * `err` as it names requests of `batch` (the array the handler was given), kept only to those; a
 * refusal naming none of them (eachInput over another array: its indices are not the batch's, and
 * would blame another client) is a plain refusal, each request then run alone.
 */
function namedIn(err: InputErrors, batch: RequestInput[]): PredictionError {
  const named = err.of(batch);
  if (named.size === 0) return new PredictionError(err.message, err.status);
  // The refusal itself when it names only the batch's own requests: an UnreadRequests stays one.
  return named.size === err.errors.size ? err : new InputErrors(named, batch);
}

function isClientError(err: unknown): boolean {
  const { status } = classify(err);
  return status >= 400 && status < 500;
}

/**
 * A stateful model's requests are never run a second time: its handler keeps each sequence's
 * state across requests, and a batch it refused may have moved some sequences on before the
 * refusal (a step taken, a request appended to a history); running them again would take that
 * step twice.
 */
function isSequenceModel(facts: ModelFacts): boolean {
  return facts.modelYamlConfig.sequenceBatching === true;
}

function checkOutputs(outputs: unknown, expected: number): HandlerOutput[] {
  if (!Array.isArray(outputs)) throw tsError('TSS_ERR_PREDICTION_BAD_OUTPUT');
  if (outputs.length !== expected) throw tsError('TSS_ERR_PREDICTION_BATCH_MISMATCH');
  return outputs as HandlerOutput[];
}

function toResponses(outputs: HandlerOutput[], requests: WireRequest[], context: BatchContext, budget: AnswerBudget, streaming: boolean): WireResponse[] {
  return outputs.map((output, i) => {
    const meta = context.responses[i]!;
    const id = requests[i]!.id;
    const body = serializeOutput(output);
    const headers: Record<string, string> = { 'content-type': defaultContentType(output), ...meta.headers };
    if (streaming) headers[STREAM_NEXT.name] = STREAM_NEXT.value;
    const answer = { id, status: meta.status, phrase: meta.phrase, headers, body };
    return budget.take(id, answerBytes(answer)) ? answer : refusedResponse(id, budget.max);
  });
}

/**
 * The error of the requests left over from a refused batch (made once for all of them): whose
 * input the refusal was about is not known, or not theirs, so they get no client's 400 but a 503
 * that says why the batch was refused (`refused`) and they were not run again (`notAgain`), and
 * asks for them again (`unless`: but for their own input's error).
 */
function notRunAgain(refused: string, notAgain: string, unless: string): WireError {
  return toWireError(tsError('TSS_ERR_PREDICTION_NOT_RUN_AGAIN', refused, notAgain, unless));
}

/** The tail of a not-run 503 whose refusal named no request: it may be this one's own. */
const unlessOwn = ', unless that error is about its input';

/** A refusal's message as another client's 503 quotes it: cut short (a handler's may be megabytes, quoting a client). */
function quoted(refusal: unknown): string {
  return shortened(toWireError(refusal).message, QUOTED_LENGTH);
}

/** The most of a refusal's message a not-run 503 quotes. */
const QUOTED_LENGTH = 200;

function refusedResponse(id: string, maxResponseSize: number): WireResponse {
  return failedResponse(id, toWireError(responseTooLarge(maxResponseSize)));
}

/** A request answered with its own error, the rest of its batch with theirs: its body empty. */
function failedResponse(id: string, error: WireError): WireResponse {
  return { id, status: error.status, phrase: '', headers: {}, body: new Uint8Array(0), error };
}

/**
 * TorchServe sends no Content-Type unless the handler sets one; tsserve names what it sent, so
 * clients can tell JSON from bytes (docs/compatibility.md).
 */
function defaultContentType(output: HandlerOutput): string {
  if (output instanceof Uint8Array) return DEFAULT_CONTENT_TYPES.bytes;
  return typeof output === 'string' ? DEFAULT_CONTENT_TYPES.text : DEFAULT_CONTENT_TYPES.json;
}

/** Bytes as they are, strings as UTF-8, anything else as JSON with indent 2 (Python's json.dumps). */
export function serializeOutput(output: HandlerOutput): Uint8Array {
  if (output instanceof Uint8Array) return output;
  if (typeof output === 'string') return Buffer.from(output, 'utf8');
  let json: string | undefined;
  try {
    json = toJson(output, '');
  } catch {
    json = undefined;
  }
  if (json === undefined) throw tsError('TSS_ERR_PREDICTION_UNSUPPORTED_OUTPUT');
  return Buffer.from(json, 'utf8');
}

/**
 * JSON.stringify(value, null, 2), except that a Map becomes an object in insertion order: plain
 * objects put integer-like keys first, which would reorder a top-5 keyed by class index.
 */
function toJson(value: unknown, indent: string): string | undefined {
  if (!(value instanceof Map) && !containsMap(value)) return JSON.stringify(value, null, 2)?.replace(/\n/g, `\n${indent}`);
  const inner = `${indent}  `;
  if (value instanceof Map) {
    const parts = [...value].map(([k, v]) => `${inner}${JSON.stringify(String(k))}: ${toJson(v, inner) ?? 'null'}`);
    return parts.length ? `{\n${parts.join(',\n')}\n${indent}}` : '{}';
  }
  if (Array.isArray(value)) {
    const parts = value.map((v) => `${inner}${toJson(v, inner) ?? 'null'}`);
    return parts.length ? `[\n${parts.join(',\n')}\n${indent}]` : '[]';
  }
  const parts = Object.entries(value as object).flatMap(([k, v]) => {
    const text = toJson(v, inner);
    return text === undefined ? [] : [`${inner}${JSON.stringify(k)}: ${text}`];
  });
  return parts.length ? `{\n${parts.join(',\n')}\n${indent}}` : '{}';
}

function containsMap(value: unknown): boolean {
  if (value instanceof Map) return true;
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return false;
  return Object.values(value).some(containsMap);
}

/** Any error a handler throws, as the batch-level error the front end answers with. */
export function toWireError(err: unknown): WireError {
  const e = classify(err);
  return { code: e.code, message: e.message, status: e.status };
}

function classify(err: unknown): TsError {
  if (isTsError(err)) return err;
  if (err instanceof PredictionError) return errorFromWire('TSS_ERR_PREDICTION_HANDLER', err.message, err.status);
  if (isOutOfMemory(err)) return tsError('TSS_ERR_PREDICTION_OUT_OF_RESOURCES');
  return tsError('TSS_ERR_PREDICTION_FAILED');
}

function isOutOfMemory(err: unknown): boolean {
  return err instanceof RangeError && /allocation failed|Invalid (typed )?array length|out of memory/i.test(err.message);
}

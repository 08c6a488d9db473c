/**
 * @module protocol/message-shape
 * What a worker sends (each message with its model's key), checked before the front end reads it. The channel is the handler's too: a
 * handler can call process.send with anything, and a message the front end trusted by its type
 * (a reply without items, an error without a code, null) threw inside the IPC callback, where
 * nothing catches it, and ended the front end with every model. A message of the wrong shape is
 * refused here (the caller ends that worker); the answers inside a well-formed one are checked
 * again where they are applied (answer-head.ts).
 */
import type { FromWorker, WireError, WireMetric, WireStage } from './messages.js';

/** The message as FromWorker, or undefined when it is not one. */
export function fromWorker(msg: unknown): FromWorker | undefined {
  if (!isObject(msg) || typeof msg.key !== 'string') return undefined;
  const shaped = msg as unknown as FromWorker;
  switch (msg.kind) {
    case 'loaded':
      return msg.batchLimit === undefined || (Number.isSafeInteger(msg.batchLimit) && (msg.batchLimit as number) > 0) ? shaped : undefined;
    case 'unloaded':
      return shaped;
    case 'load-failed':
      return isWireError(msg.error) ? shaped : undefined;
    case 'intermediate':
      return isBatchId(msg.batchId) && isItems(msg.items) ? shaped : undefined;
    case 'reply':
      return isBatchId(msg.batchId) &&
        isItems(msg.items) &&
        isMetrics(msg.metrics) &&
        (msg.workMs === undefined || isFiniteNumber(msg.workMs)) &&
        isStages(msg.stages)
        ? shaped
        : undefined;
    case 'batch-failed':
      return isBatchId(msg.batchId) && isWireError(msg.error) && isMetrics(msg.metrics) && isStages(msg.stages) ? shaped : undefined;
    default:
      return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function isBatchId(value: unknown): boolean {
  return Number.isSafeInteger(value);
}

function isWireError(value: unknown): value is WireError {
  return isObject(value) && typeof value.code === 'string' && typeof value.message === 'string' && (value.status === undefined || isFiniteNumber(value.status));
}

/** Each answer has its request's id and, when refused where it was made, a well-formed error. */
function isItems(value: unknown): boolean {
  return Array.isArray(value) && value.every((item) => isObject(item) && typeof item.id === 'string' && (item.error === undefined || isWireError(item.error)));
}

function isMetrics(value: unknown): value is WireMetric[] {
  return Array.isArray(value) && value.every(isMetric);
}

function isMetric(value: unknown): value is WireMetric {
  return (
    isObject(value) &&
    typeof value.name === 'string' &&
    typeof value.unit === 'string' &&
    (value.type === 'counter' || value.type === 'gauge') &&
    isFiniteNumber(value.value) &&
    isObject(value.dimensions) &&
    Object.values(value.dimensions).every((d) => typeof d === 'string')
  );
}

const STAGES = new Set(['preprocess', 'inference', 'postprocess']);

function isStages(value: unknown): value is WireStage[] {
  return Array.isArray(value) && value.every(isStage);
}

function isStage(value: unknown): value is WireStage {
  if (!isObject(value)) return false;
  const counted = value.requests === undefined || (Number.isSafeInteger(value.requests) && (value.requests as number) >= 0);
  return STAGES.has(value.name as string) && isFiniteNumber(value.start) && isFiniteNumber(value.end) && counted;
}

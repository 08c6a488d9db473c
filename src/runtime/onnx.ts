/**
 * @module runtime/onnx
 * onnxruntime-node sessions with the thread budget a model server needs on a small machine:
 * the frontend gives each worker process its share of the cores (workers x threads <= cores,
 * in TSSERVE_INTRA_OP_THREADS), and no thread busy-waits between runs, which on two cores takes a
 * whole core from the request path.
 */
import * as ort from 'onnxruntime-node';
import { INTRA_OP_THREADS_ENV } from '../worker/protocol.js';

export interface SessionOptions {
  /** Defaults to the worker's share of the cores. */
  intraOpThreads?: number;
}

export async function createSession(modelPath: string, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: opts.intraOpThreads ?? workerThreadBudget(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  });
}

function workerThreadBudget(): number {
  const n = Number(process.env[INTRA_OP_THREADS_ENV]);
  return Number.isInteger(n) && n > 0 ? n : 1;
}

export { ort };

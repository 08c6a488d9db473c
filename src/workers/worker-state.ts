/**
 * @module workers/worker-state
 * The five worker states of TorchServe and the moves between them:
 *
 *   STARTED ──loaded──▶ MODEL_LOADED ──exit/timeout──▶ STOPPED ──backoff──▶ (a new worker)
 *      │                     │
 *      └──load failed──▶ ERROR          any ──scale down / unregister──▶ SCALED_DOWN (final)
 *
 * Describe shows MODEL_LOADED as READY and every other state as UNLOADING, as TorchServe 0.12 does.
 */
export type WorkerState = 'STARTED' | 'MODEL_LOADED' | 'STOPPED' | 'ERROR' | 'SCALED_DOWN';

const ALLOWED: Record<WorkerState, readonly WorkerState[]> = {
  STARTED: ['MODEL_LOADED', 'ERROR', 'STOPPED', 'SCALED_DOWN'],
  MODEL_LOADED: ['STOPPED', 'SCALED_DOWN'],
  STOPPED: ['SCALED_DOWN'],
  ERROR: ['STOPPED', 'SCALED_DOWN'],
  SCALED_DOWN: [],
};

export function canMove(from: WorkerState, to: WorkerState): boolean {
  return ALLOWED[from].includes(to);
}

/**
 * A move canMove refuses that is expected, and ignored: it arrives after the worker left for good
 * (a process's exit after its scale-down, a 'loaded' message read after its exit) or repeats the
 * state. Any other refused move is a bug in the code that asked for it (WORKER_STATE_WARNING).
 */
export function isStaleMove(from: WorkerState, to: WorkerState): boolean {
  return from === to || from === 'STOPPED' || from === 'SCALED_DOWN';
}

/** The process warning's name for a move that is neither allowed nor stale. */
export const WORKER_STATE_WARNING = 'WorkerStateWarning';

export function describeStatus(state: WorkerState): 'READY' | 'UNLOADING' {
  return state === 'MODEL_LOADED' ? 'READY' : 'UNLOADING';
}

/** Seconds to wait before restart attempt n (TorchServe's WorkerThread.BACK_OFF). */
const BACK_OFF = [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597];

export function backoffSeconds(attempt: number): number {
  return BACK_OFF[Math.min(attempt, BACK_OFF.length - 1)]!;
}

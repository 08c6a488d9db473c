/**
 * A worker without a process, for the in-process tier: the pool gets it from its spawn seam
 * (PoolDeps.spawn) instead of a WorkerProcess. It loads at once and answers each request with what
 * reached it (FakeAnswer: its inputs as text and its headers), as test/fixtures/echo_handler.ts
 * does in a real worker; a request with an input `hold` keeps its batch (and the worker) busy until
 * the test calls `release`, so a queue can be filled on purpose.
 */
import { EventEmitter } from 'node:events';
import type { Job } from '../../src/batching/job.js';
import type { BatchOutcome, WorkerProcess } from '../../src/workers/worker-process.js';
import type { WorkerState } from '../../src/workers/worker-state.js';

export const HOLD = 'hold';

/** A fake worker's answer: each input by name, as text, and the headers the handler would see. */
export interface FakeAnswer {
  readonly inputs: Record<string, string>;
  readonly headers: Record<string, string>;
}

export class FakeWorker extends EventEmitter {
  state: WorkerState = 'STARTED';
  readonly startTime = new Date();
  readonly memoryUsage = 0;
  exited = false;
  /** Batches that asked to be held, each with the way to finish it. */
  private readonly held: Array<() => void> = [];
  private running = 0;

  readonly id: string;
  readonly pid: number;

  constructor(id: string, pid: number) {
    super();
    this.id = id;
    this.pid = pid;
  }

  /**
   * What the memory budget reads of it (a test sets it to stand for a process's PSS); undefined,
   * as when no process can be read: the budget estimates it.
   */
  memory: number | undefined = undefined;

  residentBytes(): number | undefined {
    return this.memory;
  }

  /** What stopping it frees: all it holds, as a process of its own. */
  freedBytes(): number | undefined {
    return this.memory;
  }

  get busy(): boolean {
    return this.running > 0;
  }

  start(): Promise<void> {
    this.moveTo('MODEL_LOADED');
    return Promise.resolve();
  }

  runBatch(jobs: Job[]): Promise<BatchOutcome> {
    this.running++;
    const answer = (): BatchOutcome => {
      this.running--;
      for (const job of jobs) job.respond({ status: 200, phrase: 'OK', headers: {}, body: Buffer.from(JSON.stringify(answerOf(job))) });
      return { unstarted: [], workMs: 1 };
    };
    if (!jobs.some((job) => Object.values(answerOf(job).inputs).includes(HOLD))) return Promise.resolve(answer());
    return new Promise((resolve) => this.held.push(() => resolve(answer())));
  }

  /** Finishes every held batch. */
  release(): void {
    for (const finish of this.held.splice(0)) finish();
  }

  /** Ends as a killed process does: what it held is answered first, then it exits. */
  kill(): void {
    this.release();
    this.exited = true;
    this.moveTo('STOPPED');
    this.emit('exit', null, 'SIGKILL');
  }

  moveTo(state: WorkerState): void {
    const previous = this.state;
    this.state = state;
    this.emit('state', state, previous);
  }

  /** What the pool holds it as: the WorkerProcess members it uses, and no process. */
  asWorkerProcess(): WorkerProcess {
    return this as unknown as WorkerProcess;
  }
}

function answerOf(job: Job): FakeAnswer {
  const inputs = Object.fromEntries(job.request.params.map((p) => [p.name, Buffer.from(p.value).toString('utf8')]));
  return { inputs, headers: job.request.headers };
}

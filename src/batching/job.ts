/**
 * @module batching/job
 * One inference request waiting for, or inside, a batch. It knows how to answer itself through
 * the sink the HTTP layer gave it and knows no HTTP. It answers exactly once: a late reply after a
 * timeout, or a second error, is dropped here rather than written twice.
 */
import type { ErrorCode, TsError } from '../errors.js';
import type { RequestTrace } from '../metrics/tracing.js';
import type { WireRequest } from '../protocol/messages.js';

export interface JobResponse {
  readonly status: number;
  readonly phrase: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
}

export interface JobSink {
  /** A streamed part; the first one decides status and headers. */
  intermediate(response: JobResponse): void;
  respond(response: JobResponse): void;
  /**
   * The job failed; `headers` are the server's own for its answer (a new sequence's id), which a
   * failure carries too: a client whose request opened a sequence must learn its id to close it.
   */
  fail(error: TsError, headers?: Readonly<Record<string, string>>): void;
  /**
   * The job's trace, told as it starts, before the job is enqueued or refused: a gRPC stream's
   * response metadata carries it also when the prediction is refused (grpc/predict.ts).
   */
  traced?(trace: RequestTrace): void;
}

/**
 * The headers that make a job an explanation or a describe (handlers read them too, as
 * TorchServe's do). Only a route or the server may set them: a client's own are dropped, so that
 * `describe: True` on /predictions or `explain: True` on /invocations cannot pick the code path.
 */
const JOB_KIND_HEADERS = ['explain', 'describe'];

/**
 * A client's headers as its handler sees them: without the ones that choose the job's kind and,
 * with token authorization on (`keyed`), without Authorization, which then carries the server's
 * inference key: a handler is the model's code, and the key is not its to read or pass on.
 */
export function handlerHeaders(headers: Record<string, string>, keyed: boolean): Record<string, string> {
  const out = { ...headers };
  for (const name of JOB_KIND_HEADERS) delete out[name];
  if (keyed) delete out.authorization;
  return out;
}

/** A batch of the server's own requests only: its batch metrics are not counted either. */
export function allQuiet(jobs: Iterable<Job>): boolean {
  for (const job of jobs) if (!job.quiet) return false;
  return true;
}

/** An answer of a job: a streamed part, the final one, or a failure without a run (NOT_RUN). */
export type AnswerKind = 'part' | 'final' | 'not-run';

/**
 * The failures of a job that no handler ran: its batch was refused and it not run again, or it
 * waited past its deadline. Its client may send it again as it was; an error code added with that
 * meaning belongs here, for a stateful model's sequence to take back what the job spent.
 */
const NOT_RUN: ReadonlySet<ErrorCode> = new Set(['TSS_ERR_PREDICTION_NOT_RUN_AGAIN', 'TSS_ERR_CLIENT_TIMEOUT']);

export class Job {
  readonly request: WireRequest;
  readonly arrivedAt = performance.now();
  /** When a worker took it from the queue; undefined again if it comes back unstarted. */
  dequeuedAt: number | undefined;
  /** Its wait in the queue is counted, once (metrics/registry.ts QueuedPrediction). */
  waitCounted = false;
  /** When it must have left the queue (clientTimeoutInMills), on performance.now()'s clock. */
  deadline: number | undefined;
  /** Its spans, when tracing is on (metrics/tracing.ts); undefined otherwise. */
  trace: RequestTrace | undefined;
  /** Headers the server adds to the answer (a new sequence's id). */
  readonly responseHeaders: Record<string, string> = {};
  /**
   * Told of each answer of the job before it goes out (a stateful model's queue follows its
   * sequences by them): a streamed `part`, the `final` one, or `not-run`, a failure without a run
   * whose client is asked to send the request again.
   */
  onAnswer: ((job: Job, answer: AnswerKind) => void) | undefined = undefined;
  /**
   * Whether its client went away (its connection closed, its call cancelled or past its deadline),
   * so that an answer reaches no one: asked as an answer goes out, when a stateful model's front
   * end set it (a sequence only that answer would have named is then closed).
   */
  clientGone: (() => boolean) | undefined = undefined;
  /** Resolves once the job has been answered, with success or an error. */
  readonly done: Promise<void>;
  private settledFlag = false;
  private readonly sink: JobSink;
  private markDone!: () => void;

  /** The server's own (the front end's warm-up): no metric counts it or its batch. */
  readonly quiet: boolean;

  constructor(request: WireRequest, sink: JobSink, quiet = false) {
    this.request = request;
    this.sink = sink;
    this.quiet = quiet;
    this.done = new Promise((resolve) => {
      this.markDone = resolve;
    });
  }

  get id(): string {
    return this.request.id;
  }

  get settled(): boolean {
    return this.settledFlag;
  }

  /**
   * Runs in a batch of its own: an explanation or a customized describe. Handlers read the first
   * request's header for the whole batch, as TorchServe's do, so these never share one.
   */
  get alone(): boolean {
    const h = this.request.headers;
    return h.explain === 'True' || h.describe === 'True';
  }

  intermediate(response: JobResponse): void {
    if (this.settledFlag) return;
    this.onAnswer?.(this, 'part');
    this.sink.intermediate(this.withServerHeaders(response));
  }

  respond(response: JobResponse): void {
    if (!this.settle()) return;
    this.onAnswer?.(this, 'final');
    this.sink.respond(this.withServerHeaders(response));
  }

  private withServerHeaders(response: JobResponse): JobResponse {
    if (Object.keys(this.responseHeaders).length === 0) return response;
    return { ...response, headers: { ...response.headers, ...this.responseHeaders } };
  }

  /** Settles the job unanswered: its client is gone (Model.withdraw). */
  drop(): void {
    this.settle();
  }

  fail(error: TsError): void {
    if (!this.settle()) return;
    this.onAnswer?.(this, NOT_RUN.has(error.code) ? 'not-run' : 'final');
    this.sink.fail(error, this.responseHeaders);
  }

  private settle(): boolean {
    if (this.settledFlag) return false;
    this.settledFlag = true;
    this.markDone();
    return true;
  }
}

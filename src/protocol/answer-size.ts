/**
 * @module protocol/answer-size
 * How large a worker's answers may be, checked on both sides of the IPC channel. The worker
 * refuses an answer over max_response_size, headers included (answerBytes), before sending it (a
 * streamed answer counts its parts' total); the front end checks again what it reads, since a handler can write to the channel
 * itself (process.send), and bounds each message as its first bytes arrive (watchMessageSize), so
 * that no worker can make it hold more than one answer's worth of a message.
 */
import type { ChildProcess } from 'node:child_process';
import { tsError, type TsError } from '../errors.js';
import type { LoadMessage, WireResponse } from './messages.js';

export function responseTooLarge(maxResponseSize: number): TsError {
  return tsError('TSS_ERR_PREDICTION_RESPONSE_TOO_LARGE', maxResponseSize);
}

/** Each request's bytes answered so far, its streamed parts included: in all, at most max_response_size. */
export class AnswerBudget {
  private readonly spent = new Map<string, number>();
  readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  /** Counts `bytes` more for request `id`; false once its answer has passed the limit. */
  take(id: string, bytes: number): boolean {
    const total = (this.spent.get(id) ?? 0) + bytes;
    this.spent.set(id, total);
    return total <= this.max;
  }
}

/** The content type the worker names when the handler named none, by what the handler answered. */
export const DEFAULT_CONTENT_TYPES = { bytes: 'application/octet-stream', text: 'text/plain; charset=utf-8', json: 'application/json' } as const;

/** The header of a streamed part that says more follow. */
export const STREAM_NEXT = { name: 'ts_stream_next', value: 'true' } as const;

/** Headers the worker sets itself, as `name: value`: not the handler's doing, so not counted. */
const OWN_HEADERS: ReadonlySet<string> = new Set([
  ...Object.values(DEFAULT_CONTENT_TYPES).map((type) => `content-type: ${type}`),
  `${STREAM_NEXT.name}: ${STREAM_NEXT.value}`,
]);

/**
 * What an answer takes of max_response_size: its body, and what a handler set beside it (headers,
 * content type, status phrase), which the client receives too; a handler must not get megabytes
 * past the limit in headers. An answer whose handler set nothing may have a body of
 * max_response_size bytes.
 */
export function answerBytes(answer: Pick<WireResponse, 'headers' | 'phrase' | 'body'>): number {
  // A handler's phrase and header values may be numbers: they go out as text, and count as it.
  let bytes = answer.body.byteLength + Buffer.byteLength(String(answer.phrase));
  for (const [name, value] of Object.entries(answer.headers)) {
    if (!OWN_HEADERS.has(`${name}: ${value}`)) bytes += Buffer.byteLength(name) + Buffer.byteLength(String(value));
  }
  return bytes;
}

/** Room for an answer's status, headers and metrics beside its body, and for a batch's metrics. */
const ITEM_ROOM = 1024 * 1024;
const MESSAGE_ROOM = 1024 * 1024;

/** The largest message a worker of this model may send: a batch of answers, each up to max_response_size. */
export function messageBound(load: Pick<LoadMessage, 'largestBatch' | 'maxResponseSize'>): number {
  return Math.max(1, load.largestBatch) * (load.maxResponseSize + ITEM_ROOM) + MESSAGE_ROOM;
}

/** The parts of Node's IPC channel (lib/internal/child_process.js, child_process/serialization.js) read here. */
interface ChannelPipe {
  onread: (...args: unknown[]) => unknown;
  readStop(): number;
  buffering: boolean;
}

/**
 * Calls `onOversized` (once) when the worker starts a message larger than `bound()` (asked as
 * each message begins: a shared host's bound follows the models in it), after which no
 * more of the channel is read. Node's 'advanced' IPC buffers a message until all of it is there,
 * and has no public way to bound that: a handler's process.send of 1 GB would make the front end
 * hold 1 GB before any check could run. The 4 bytes that open each message say how large it is;
 * the channel's read callback is wrapped to look at them as soon as they arrive, so at most one
 * read (64 KiB) of an oversized message is held. The channel's handle and message buffer are Node
 * internals (as of Node 24; test/faults/handler-output fails if they change); where they are not
 * found this answers false, and only the check of each message once read remains.
 */
export function watchMessageSize(child: ChildProcess, bound: () => number, onOversized: (bytes: number, bound: number) => void): boolean {
  const pipe = internal<ChannelPipe>(child, 'kChannelHandle');
  const buffer = pipe && symbolOf(pipe, 'kMessageBuffer');
  const size = pipe && symbolOf(pipe, 'kMessageBufferSize');
  if (!pipe || !buffer || !size || typeof pipe.onread !== 'function') return false;
  const read = pipe.onread;
  const chunks = pipe as unknown as Record<symbol, Uint8Array[] | number>;
  pipe.onread = function (this: unknown, ...args: unknown[]): unknown {
    const result = read.apply(this, args);
    const head = (chunks[buffer] as Uint8Array[])[0];
    const announced = head && head.length >= 4 ? new DataView(head.buffer, head.byteOffset, 4).getUint32(0) : 0;
    const most = announced > 0 ? bound() : 0;
    if (announced > most) {
      // Read no more of it and drop what was, so that Node's disconnect does not wait for the rest.
      pipe.onread = read;
      pipe.readStop();
      chunks[buffer] = [];
      chunks[size] = 0;
      pipe.buffering = false;
      onOversized(announced, most);
    }
    return result;
  };
  return true;
}

function symbolOf(owner: object, description: string): symbol | undefined {
  return Object.getOwnPropertySymbols(owner).find((s) => s.description === description);
}

function internal<T>(owner: object, description: string): T | undefined {
  const key = symbolOf(owner, description);
  return key === undefined ? undefined : ((owner as Record<symbol, unknown>)[key] as T);
}

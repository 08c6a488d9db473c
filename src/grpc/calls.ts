/**
 * @module grpc/calls
 * What every gRPC method shares: the token check (`authorization: Bearer <key>` metadata), the
 * gRPC status of an HTTP one (from the error table, errors.ts), and one access-log line per call, as TorchServe writes them:
 * `<peer> "gRPC <method> HTTP/2.0" <status code> <ms>`.
 */
import { Metadata, status, type ServerDuplexStream, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import type { TokenKind } from '../auth/tokens.js';
import { grpcStatusName, isTsError, shortened, tsError, type TsError } from '../errors.js';
import { refusalOf } from './bounds.js';
import type { GrpcDeps } from './deps.js';

/**
 * The longest description a status is sent with: it goes as the grpc-message header, percent-
 * encoded, and one larger than the client's HTTP/2 header limit fails the call with a protocol
 * error instead of its status.
 */
const MAX_DETAILS_LENGTH = 2048;

/** A gRPC status with its description, thrown by a method and sent by its wrapper. */
export class GrpcFailure extends Error {
  readonly code: status;
  /** The metadata the status goes with (a stateful model's sequence id: trailersOf). */
  readonly trailers: Readonly<Record<string, string>>;

  constructor(code: status, details: string, trailers: Readonly<Record<string, string>> = {}) {
    // grpc-js percent-encodes the details with encodeURI, which throws on a lone surrogate (a
    // handler's message quoting a client's "\ud800", or one cut here between a pair): thrown
    // there, outside any handler of ours, it took the server down (review-16 F1).
    super(shortened(details, MAX_DETAILS_LENGTH).toWellFormed());
    this.code = code;
    this.trailers = trailers;
  }

  /** An error of the table (errors.ts) as the gRPC status and details it has there. */
  static of(err: TsError, trailers: Readonly<Record<string, string>> = {}): GrpcFailure {
    return new GrpcFailure(status[err.grpcStatus], err.message, trailers);
  }

  /** This failure, its status sent with `trailers` too. */
  with(trailers: Readonly<Record<string, string>>): GrpcFailure {
    return new GrpcFailure(this.code, this.message, { ...this.trailers, ...trailers });
  }
}

/** A text metadata value grpc-js takes (Metadata.set throws on any other). */
const METADATA_VALUE = /^[ -~]*$/;

/**
 * The failure's trailers as metadata. Their keys are header names the configuration checked
 * (config/server-config.ts headerName: grpc-js and Node's HTTP/2 take them); a value grpc-js would
 * refuse is left out, not thrown as the call ends.
 */
function trailersOf(failure: GrpcFailure): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(failure.trailers)) if (METADATA_VALUE.test(value)) metadata.set(key, value);
  return metadata;
}

/** TorchServe's mapping of an HTTP status to a gRPC one: the error table's (errors.ts). */
export function grpcStatusOf(httpStatus: number): status {
  return status[grpcStatusName(httpStatus)];
}

export function asFailure(err: unknown): GrpcFailure {
  if (err instanceof GrpcFailure) return err;
  if (isTsError(err)) return GrpcFailure.of(err);
  return new GrpcFailure(status.INTERNAL, (err as Error).message ?? String(err));
}

type Call = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>;

/** The `authorization` metadata value, for the token check and the REST calls it is passed to. */
export function authorization(call: Call): string | undefined {
  const value = call.metadata.get('authorization')[0];
  return typeof value === 'string' ? value : undefined;
}

export function authorize(deps: GrpcDeps, kind: TokenKind, call: Call): void {
  if (deps.tokens && !deps.tokens.allows(kind, authorization(call))) {
    throw GrpcFailure.of(tsError('TSS_ERR_HTTP_INVALID_TOKEN'));
  }
}

/** Throws the refusal of a message the deserializer did not decode (grpc/bounds.ts). */
export function refuseUndecoded(request: unknown): void {
  const refusal = refusalOf(request);
  if (refusal) throw GrpcFailure.of(refusal);
}

/**
 * A call that carries predictions: its response metadata can still be sent (a traced one's), and
 * it tells whether its client is still there (cancelled, its deadline).
 */
export type PredictionCall = Pick<Call, 'sendMetadata' | 'getDeadline' | 'cancelled'>;

/** The trace id of each traced call's prediction, for its access-log line. */
const traceIds = new WeakMap<object, string>();

/**
 * Notes the trace id of the call's prediction; false when one was noted already (a stream's
 * later predictions: its one access line and its response metadata are its first's).
 */
export function noteTraceId(call: PredictionCall, traceId: string): boolean {
  if (traceIds.has(call)) return false;
  traceIds.set(call, traceId);
  return true;
}

/** Whether the call's trace id was noted already (noteTraceId). */
export function traceNoted(call: PredictionCall): boolean {
  return traceIds.has(call);
}

/** Writes the call's access-log line (with its trace id when traced), once; answers the function that ends it. */
export function accessLog(deps: GrpcDeps, method: string, call: Call): (code: status) => void {
  const started = performance.now();
  // Read now: a call its client cancelled has no peer by its end ("unknown").
  const peer = call.getPeer();
  let logged = false;
  return (code) => {
    if (logged) return;
    logged = true;
    const traceId = traceIds.get(call);
    const ended = clientGone(call) ? (pastDeadline(call) ? status.DEADLINE_EXCEEDED : status.CANCELLED) : code;
    deps.loggers.access(`${peer} "gRPC ${method} HTTP/2.0" ${ended} ${Math.round(performance.now() - started)}${traceId ? ` trace_id=${traceId}` : ''}`);
  };
}

/**
 * The call's client is gone: it cancelled the call, or its deadline passed. What the call was
 * answered then reached no one; the client saw CANCELLED or DEADLINE_EXCEEDED (review-18 F8: the
 * access log said 0).
 */
export function clientGone(call: Pick<Call, 'cancelled' | 'getDeadline'>): boolean {
  return call.cancelled || pastDeadline(call);
}

function pastDeadline(call: Pick<Call, 'getDeadline'>): boolean {
  const deadline = call.getDeadline();
  return (deadline instanceof Date ? deadline.getTime() : deadline) <= Date.now();
}

/** A unary method: token checked, failures sent as their status, the call logged. */
export function unary<Req, Res>(deps: GrpcDeps, kind: TokenKind, method: string, run: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const done = accessLog(deps, method, call as Call);
    void (async () => {
      authorize(deps, kind, call as Call);
      refuseUndecoded(call.request);
      return run(call.request, call);
    })().then(
      (response) => {
        done(status.OK);
        callback(null, response);
      },
      (err: unknown) => {
        const failure = asFailure(err);
        done(failure.code);
        callback({ code: failure.code, details: failure.message, metadata: trailersOf(failure) });
      },
    );
  };
}

/** A server-streaming method: as `unary`, with `run` writing the messages and ending the stream. */
export function serverStream<Req, Res>(deps: GrpcDeps, kind: TokenKind, method: string, run: (call: ServerWritableStream<Req, Res>) => Promise<void>) {
  return (call: ServerWritableStream<Req, Res>): void => {
    const done = accessLog(deps, method, call as Call);
    void (async () => {
      authorize(deps, kind, call as Call);
      refuseUndecoded(call.request);
      await run(call);
    })().then(
      () => {
        done(status.OK);
        call.end();
      },
      (err: unknown) => {
        const failure = asFailure(err);
        done(failure.code);
        call.emit('error', { code: failure.code, details: failure.message, metadata: trailersOf(failure) });
      },
    );
  };
}

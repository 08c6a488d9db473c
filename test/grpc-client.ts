/**
 * A grpc-js client of one of tsserve's services, built from the protos the server serves, for
 * the gRPC tests; closed when the test ends.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { Test } from 'tap';
import { ROOT } from './helpers.js';

export type UnaryAnswer = { value?: Record<string, unknown>; code: number; details?: string };
type Callback = (err: grpc.ServiceError | null, value?: Record<string, unknown>) => void;
export type GrpcClient = grpc.Client &
  Record<
    string,
    ((request: object, metadata: grpc.Metadata, callback: Callback) => void) &
      ((request?: object, metadata?: grpc.Metadata) => grpc.ClientReadableStream<{ prediction: Buffer }>)
  >;

export function grpcClient(t: Test, address: string, file: string, service: string): GrpcClient {
  const definition = loadSync(file, { keepCase: true, longs: Number, defaults: true, includeDirs: [join(ROOT, 'src', 'grpc', 'proto')] });
  const Service = grpc.makeGenericClientConstructor(definition[service] as grpc.ServiceDefinition, service);
  const client = new Service(address, grpc.credentials.createInsecure()) as unknown as GrpcClient;
  t.teardown(() => client.close());
  return client;
}

/** A unary call's answer, or its error as `{code, details}`. */
export function unaryCall(client: GrpcClient, method: string, request: object, metadata = new grpc.Metadata()): Promise<UnaryAnswer> {
  return new Promise((resolve) => {
    client[method]!(request, metadata, (err, value) => resolve(err ? { code: err.code, details: err.details } : { value, code: grpc.status.OK }));
  });
}

/** A StreamPredictions2 reply: a prediction, or its failure in-band. */
export type StreamReply = { prediction: Buffer; status?: { code: number; message: string } };

/** Sends `messages` on one StreamPredictions2 stream with `metadata`; the stream's response metadata and replies. At most 30 s. */
export function streamPredictions2(
  client: grpc.Client,
  metadata: grpc.Metadata,
  messages: object[],
): Promise<{ head: grpc.Metadata | undefined; replies: StreamReply[] }> {
  type Stream = grpc.ClientDuplexStream<object, StreamReply>;
  return new Promise((resolve, reject) => {
    const stream = (client as unknown as { StreamPredictions2: (m: grpc.Metadata, o: grpc.CallOptions) => Stream }).StreamPredictions2(metadata, {
      deadline: Date.now() + 30_000,
    });
    let head: grpc.Metadata | undefined;
    const replies: StreamReply[] = [];
    stream.on('metadata', (m: grpc.Metadata) => {
      head = m;
    });
    stream.on('data', (reply: StreamReply) => {
      replies.push(reply);
      if (replies.length === messages.length) stream.end();
    });
    stream.on('error', reject);
    stream.on('end', () => resolve({ head, replies }));
    for (const m of messages) stream.write(m);
  });
}

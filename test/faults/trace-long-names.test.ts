// A client's model name of megabytes, over gRPC (no path segment limits it, as REST's does), with
// tracing on: the spans it makes carry the name cut at 256 characters (span names, the
// tsserve.model.name attribute, the status message), so the export bodies stay small and the
// front end's memory does not grow with the name; and the error a client gets quotes the name
// cut, so that a unary call's grpc-message header fits the client's HTTP/2 limits and the client
// gets its status rather than a protocol error.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { grpcClient, streamPredictions2, unaryCall } from '../grpc-client.js';
import { waitFor } from '../helpers.js';
import { decodeTraces, tracedEchoServer, type ReceivedSpan } from '../otlp-receiver.js';
import { frontEndMemory } from './memory.js';
import { survived } from './survival.js';

const STREAMS = 10;
const LONG_NAME = 'q'.repeat(3_000_000);
const LIMIT = 256;

/** An OTLP/HTTP receiver that keeps each export body's size and spans; closed when the test ends. */
async function sizingReceiver(t: Test): Promise<{ url: string; sizes: number[]; spans: ReceivedSpan[] }> {
  const sizes: number[] = [];
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      sizes.push(body.length);
      spans.push(...decodeTraces(body));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, sizes, spans };
}

t.test('a 3 MB unknown model name over gRPC, traced: spans and errors carry it cut', async (t) => {
  const receiver = await sizingReceiver(t);
  const server = await tracedEchoServer(t, receiver.url);
  const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  const traced = (): grpc.Metadata => {
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`);
    return metadata;
  };
  const first = { model_name: LONG_NAME, input: { data: Buffer.from('x'), ts_request_sequence_start: Buffer.from('true') } };
  const memory = frontEndMemory();
  let answered = 0;
  for (let i = 0; i < STREAMS; i++) {
    const { replies } = await streamPredictions2(client, traced(), [first]);
    answered += replies.length;
    const reply = replies[0];
    t.not(reply?.status?.code ?? 0, 0, `stream ${i}: the unknown model's failure, in-band`);
    t.ok((reply?.status?.message.length ?? Number.POSITIVE_INFINITY) < 2 * LIMIT, `stream ${i}: its message quotes the name cut`);
  }
  await waitFor(() => receiver.spans.length >= 2 * STREAMS, 15_000, 'the streams’ spans exported').catch(() => undefined);
  memory.check(t);

  const named = receiver.spans.filter((s) => s.name.startsWith('prediction q') || s.name.startsWith('queue q'));
  t.ok(named.length >= 2 * STREAMS, `each stream's prediction and queue spans were exported (${named.length})`);
  t.ok(
    named.every((s) => s.name.length <= LIMIT),
    'the span names are cut at 256 characters',
  );
  const modelNames = named.map((s) => s.attributes['tsserve.model.name']).filter((n) => n !== undefined);
  t.ok(modelNames.length >= STREAMS, 'the prediction spans carry the model name');
  t.ok(
    modelNames.every((n) => String(n).length === LIMIT),
    'tsserve.model.name is cut at 256 characters',
  );
  const largest = Math.max(...receiver.sizes);
  t.ok(largest < 64 * 1024, `every export body is small (the largest: ${largest} bytes)`);

  // A unary call: the error's message is its grpc-message header, which a 1 MB name would overflow.
  const short = await unaryCall(client, 'Predictions', { model_name: 'nosuch', input: { data: Buffer.from('x') } });
  const long = await unaryCall(client, 'Predictions', { model_name: 'q'.repeat(1_000_000), input: { data: Buffer.from('x') } }, traced());
  t.equal(long.code, short.code, `a 1 MB unknown name gets the status an unknown name gets (${short.code})`);
  t.ok((long.details?.length ?? Number.POSITIVE_INFINITY) < 2 * LIMIT, `its message quotes the name cut (${long.details?.length} characters)`);
  t.equal(long.details, short.details?.replace('nosuch', `${'q'.repeat(LIMIT)}…`), "the server's message, the name cut (not the client's protocol error)");

  await survived(t, server, { models: ['echo'], sent: STREAMS, answered });
});

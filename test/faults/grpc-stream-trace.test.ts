// A traced StreamPredictions2 whose first message fails (the handler throws, the message opens no
// sequence, the model is unknown or refuses it) still carries its trace: the stream's response metadata has the
// client's trace in its traceresponse and its access line the trace id, as when the first succeeds
// (test/tracing.test.ts). The failure goes in-band and the stream serves its next message.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { register } from '../echo-model.js';
import { grpcClient, streamPredictions2 } from '../grpc-client.js';
import { waitFor } from '../helpers.js';
import { otlpReceiver, tracedEchoServer } from '../otlp-receiver.js';
import { survived } from './survival.js';

const START = { ts_request_sequence_start: Buffer.from('true') };

/** Sends `messages` on one stream with `traceparent`; the stream's response metadata and replies. */
function streamed(client: grpc.Client, traceparent: string, messages: object[]): ReturnType<typeof streamPredictions2> {
  const metadata = new grpc.Metadata();
  metadata.set('traceparent', traceparent);
  return streamPredictions2(client, metadata, messages);
}

t.test('StreamPredictions2 whose first message fails: its traceresponse and trace id are kept', async (t) => {
  const receiver = await otlpReceiver(t);
  const server = await tracedEchoServer(t, receiver.url);
  // No worker: it refuses every prediction.
  await register(t, server, 'idle', { initial_workers: 0 });
  const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  const good = { model_name: 'echo', input: { data: Buffer.from('one'), ...START } };
  const firsts: Array<[string, object]> = [
    ['the handler throws', { model_name: 'echo', input: { data: Buffer.from('throw'), ...START } }],
    ['the message opens no sequence', { model_name: 'echo', input: { data: Buffer.from('one') } }],
    ['the model is unknown', { model_name: 'nosuch', input: { data: Buffer.from('one'), ...START } }],
    ['the model refuses it (503)', { model_name: 'idle', input: { data: Buffer.from('one'), ...START } }],
  ];
  const access = join(server.dir, 'logs', 'access_log.log');
  let sent = 0;
  let answered = 0;
  for (const [what, first] of firsts) {
    const traceId = randomBytes(16).toString('hex');
    const { head, replies } = await streamed(client, `00-${traceId}-${randomBytes(8).toString('hex')}-01`, [first, good]);
    sent += 2;
    answered += replies.length;
    t.not(replies[0]?.status?.code ?? 0, 0, `${what}: the first message's failure, in-band`);
    t.equal(replies[1]?.status?.code ?? 0, 0, `${what}: the next message is served`);
    t.match(String(head?.get('traceresponse')[0]), new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), `${what}: traceresponse in the response metadata`);
    await waitFor(() => readFileSync(access, 'utf8').split('StreamPredictions2').length > sent / 2, 10_000, "the stream's access line").catch(() => undefined);
    t.match(readFileSync(access, 'utf8'), new RegExp(`StreamPredictions2.* trace_id=${traceId}`), `${what}: the access line has the trace id`);
  }
  await survived(t, server, { models: ['echo'], sent, answered });
});

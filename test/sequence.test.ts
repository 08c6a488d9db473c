// Stateful models (sequenceBatching in model-config.yaml), as TorchServe's sequence batching: the
// server opens a sequence for a request without an id and tells the client its id; the sequence
// stays with one worker, which keeps its state; a batch holds one request of each sequence; ends,
// idle sequences and limits are refused with TorchServe's 503. Over REST and StreamPredictions2.
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { type Counted, send, serveCounter } from './counter-model.js';
import { grpcClient } from './grpc-client.js';
import { errorBody } from './helpers.js';

const NO_WORKER =
  /^Model "counter" has no worker to serve inference request\. .*If this is a sequence inference, please check if it is closed, or expired; or exceeds maxSequenceJobQueueSize$/;

t.test("two sequences interleaved over two workers: each keeps its own sum on its own worker (TorchServe's 1 3 6)", async (t) => {
  const server = await serveCounter(t, { minWorkers: 2, maxWorkers: 2, batchSize: 4, maxBatchDelay: 20 });
  const a = await send(server, '1');
  const b = await send(server, '1');
  t.match(a.id, /^ts-seq-[0-9a-f-]{36}$/, 'the server names a new sequence and says its id');
  t.not(a.id, b.id);
  const sums: Record<string, number[]> = { a: [a.counted!.sum], b: [b.counted!.sum] };
  const pids: Record<string, Set<number>> = { a: new Set([a.counted!.pid]), b: new Set([b.counted!.pid]) };
  for (const value of ['2', '3']) {
    const [ra, rb] = await Promise.all([send(server, value, a.id!), send(server, value, b.id!)]);
    sums.a!.push(ra.counted!.sum);
    sums.b!.push(rb.counted!.sum);
    pids.a!.add(ra.counted!.pid);
    pids.b!.add(rb.counted!.pid);
    t.equal(ra.id, a.id, 'the answer carries the sequence id');
  }
  t.same(sums, { a: [1, 3, 6], b: [1, 3, 6] });
  t.equal(pids.a!.size, 1, 'sequence a stayed on one worker');
  t.equal(pids.b!.size, 1, 'sequence b stayed on one worker');

  const described = (await (await fetch(`${server.urls.management}/models/counter`)).json()) as Array<Record<string, unknown>>;
  t.match(described[0], { stateful: true, maxNumSequence: 8, maxSequenceJobQueueSize: 1 }, 'maxNumSequence raised to batchSize x maxWorkers');
});

t.test("a batch holds one request of each sequence; a sequence's requests run in order", async (t) => {
  // A batch of two waits its whole maxBatchDelay for the four it could hold: 1 s, so that all four
  // requests below have arrived before the first batch leaves (200 ms were not enough for a
  // machine at load 30: its first batch held a's request alone, npm test at 15:40 on 2026-12-07).
  const server = await serveCounter(t, { minWorkers: 1, maxWorkers: 1, batchSize: 4, maxBatchDelay: 1000, maxSequenceJobQueueSize: 3 });
  const a = await send(server, '0');
  const b = await send(server, '0');
  const answers = await Promise.all([send(server, '1 sleep:100', a.id!), send(server, '2', a.id!), send(server, '10', b.id!), send(server, '3', a.id!)]);
  t.same(
    answers.map((r) => r.counted!.sum),
    [1, 3, 10, 6],
    'a: 1, 1+2, 1+2+3 in order; b on its own',
  );
  for (const r of answers) {
    const batch = r.counted!.batch;
    t.equal(new Set(batch).size, batch.length, `no sequence twice in a batch (${batch.length} requests)`);
  }
  t.equal(answers[0]!.counted!.batch.length, 2, 'the first batch: one request of a, one of b');
});

t.test('refusals: an unknown id, a closed sequence, an idle one, too many sequences', async (t) => {
  const server = await serveCounter(t, { minWorkers: 1, maxWorkers: 1, batchSize: 1, sequenceMaxIdleMSec: 400 });

  const unknown = await send(server, '1', 'ts-seq-nope');
  t.equal(unknown.res.status, 503);
  t.match((await errorBody(unknown.res)).message, NO_WORKER);

  const first = await send(server, '1');
  const tooMany = await send(server, '1');
  t.equal(tooMany.res.status, 503, 'maxNumSequence (1 here) sequences are open');
  const last = await send(server, '2', first.id!, true);
  t.equal(last.counted!.sum, 3, 'the end request is answered');
  t.equal((await send(server, '3', first.id!)).res.status, 503, 'the sequence is closed');

  const fresh = await send(server, '5');
  t.equal(fresh.counted!.sum, 5, 'after the end a new sequence may open');
  await new Promise((r) => setTimeout(r, 700));
  t.equal((await send(server, '1', fresh.id!)).res.status, 503, 'idle past sequenceMaxIdleMSec: expired');
  t.equal((await send(server, '7')).counted!.sum, 7, 'its place is free again');
});

t.test('a request that opens a sequence and is refused still names its sequence, so its client can close it (review-15 F1)', async (t) => {
  const server = await serveCounter(t, { minWorkers: 1, maxWorkers: 1, batchSize: 1, maxNumSequence: 1 });
  const bad = await send(server, 'bad');
  t.equal(bad.res.status, 400);
  t.match(await errorBody(bad.res), { code: 400, message: 'Not a number: bad' });
  // Before, a refusal the handler's answers did not carry went out without it: the sequence held
  // the only place, and no client knew its id to close it (sequenceMaxIdleMSec 0: never idle).
  t.match(bad.id, /^ts-seq-/, 'the 400 carries the id of the sequence it opened');
  t.equal((await send(server, '1')).res.status, 503, 'the sequence holds its place');
  t.equal((await send(server, '2', bad.id!, true)).counted?.sum, 2, 'its client ends it by its id');
  t.equal((await send(server, '5')).counted?.sum, 5, 'and a new sequence may open');
});

t.test('gRPC StreamPredictions2: two streams, each a sequence sending 1, 2, 3, answered 1 3 6 in order', async (t) => {
  const server = await serveCounter(t, { minWorkers: 2, maxWorkers: 2, batchSize: 2, maxBatchDelay: 20 });
  const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  type Reply = { prediction: Buffer; sequence_id?: string; status?: { code: number; message: string } };
  const runStream = (): Promise<Reply[]> =>
    new Promise((resolve, reject) => {
      const stream = (client as unknown as { StreamPredictions2: () => grpc.ClientDuplexStream<object, Reply> }).StreamPredictions2();
      const replies: Reply[] = [];
      stream.on('data', (reply: Reply) => {
        replies.push(reply);
        const next = replies.length + 1;
        if (next <= 3) stream.write({ model_name: 'counter', sequence_id: reply.sequence_id, input: { body: Buffer.from(String(next)) } });
        else stream.end();
      });
      stream.on('error', reject);
      stream.on('end', () => resolve(replies));
      stream.write({ model_name: 'counter', input: { body: Buffer.from('1'), ts_request_sequence_start: Buffer.from('true') } });
    });
  const streams = await Promise.all([runStream(), runStream()]);
  for (const replies of streams) {
    t.same(
      replies.map((r) => (JSON.parse(r.prediction.toString()) as Counted).sum),
      [1, 3, 6],
    );
    t.match(replies[0]!.sequence_id, /^ts-seq-/);
    t.equal(new Set(replies.map((r) => r.sequence_id)).size, 1, 'one sequence per stream');
  }
  t.not(streams[0]![0]!.sequence_id, streams[1]![0]!.sequence_id);

  const firstReply = (input: Record<string, Buffer>): Promise<Reply> =>
    new Promise<Reply>((resolve, reject) => {
      const stream = (client as unknown as { StreamPredictions2: () => grpc.ClientDuplexStream<object, Reply> }).StreamPredictions2();
      stream.on('data', (reply: Reply) => {
        resolve(reply);
        stream.end();
      });
      stream.on('error', reject);
      stream.write({ model_name: 'counter', input });
    });
  const refused = await firstReply({ body: Buffer.from('1') });
  // INTERNAL, as TorchServe's InferenceImpl sends it (review-17 F11).
  t.match(refused.status, { code: grpc.status.INTERNAL, message: 'Parameter sequenceId is required.' }, 'errors in-band, the stream stays open');
  // Review-15 F1: a sequence's opening message the handler refuses names the sequence it opened.
  const bad = await firstReply({ body: Buffer.from('bad'), ts_request_sequence_start: Buffer.from('true') });
  t.match(
    bad,
    { status: { code: grpc.status.INVALID_ARGUMENT, message: 'Not a number: bad' }, sequence_id: /^ts-seq-/ },
    "the refusal in-band, with its sequence's id",
  );
});

t.test("gRPC StreamPredictions2 sends a streaming handler's parts, each a message naming the sequence (review-18 F6)", async (t) => {
  const server = await serveCounter(t, { minWorkers: 1, maxWorkers: 1, batchSize: 1 });
  const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  type Reply = { prediction: Buffer; sequence_id?: string };
  const replies = await new Promise<Reply[]>((resolve, reject) => {
    const stream = (client as unknown as { StreamPredictions2: () => grpc.ClientDuplexStream<object, Reply> }).StreamPredictions2();
    const got: Reply[] = [];
    stream.on('data', (reply: Reply) => {
      got.push(reply);
      if (reply.prediction.toString().startsWith('{')) stream.end();
    });
    stream.on('error', reject);
    stream.on('end', () => resolve(got));
    stream.write({ model_name: 'counter', input: { body: Buffer.from('1 parts:2'), ts_request_sequence_start: Buffer.from('true') } });
  });
  // Before, the parts were dropped: the stream answered the final message only.
  t.same(replies.map((r) => r.prediction.toString()).slice(0, 2), ['part 0', 'part 1'], 'each part, in order, before the answer');
  t.match(JSON.parse(replies[2]!.prediction.toString()), { sum: 1 });
  t.equal(new Set(replies.map((r) => r.sequence_id)).size, 1, 'every message names the one sequence');
  t.match(replies[0]!.sequence_id, /^ts-seq-/);
});

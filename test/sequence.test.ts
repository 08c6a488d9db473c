// Stateful models (sequenceBatching in model-config.yaml), as TorchServe's sequence batching: the
// server opens a sequence for a request without an id and tells the client its id; the sequence
// stays with one worker, which keeps its state; a batch holds one request of each sequence; ends,
// idle sequences and limits are refused with TorchServe's 503.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { grpcClient } from './grpc-client.js';
import { buildMar, errorBody, FIXTURES, startTestServer, tempDir, waitFor, waitReady, type TestServer } from './helpers.js';

interface Counted {
  sum: number;
  pid: number;
  batch: string[];
  started: boolean;
}

async function serveCounter(t: Test, yaml: Record<string, number | boolean>, properties: Record<string, string> = {}): Promise<TestServer> {
  const dir = tempDir(t);
  const config = join(dir, 'model-config.yaml');
  writeFileSync(
    config,
    Object.entries({ sequenceBatching: true, ...yaml })
      .map(([k, v]) => `${k}: ${v}`)
      .join('\n') + '\n',
  );
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'counter', version: '1.0', handler: join(FIXTURES, 'counter_handler.ts'), configFile: config }),
    properties: { load_models: 'counter.mar', ...properties },
  });
  await waitReady(server.urls.management, 'counter', Number(yaml.minWorkers ?? 1));
  return server;
}

/** Sends one value on a sequence (a new one without `id`); answers the response, its sum and the sequence id. */
async function send(server: TestServer, value: string, id?: string, end = false): Promise<{ res: Response; id: string | null; counted?: Counted }> {
  const headers: Record<string, string> = { 'content-type': 'text/plain' };
  if (id) headers.ts_request_sequence_id = id;
  if (end) headers.ts_request_sequence_end = 'true';
  const res = await fetch(`${server.urls.inference}/predictions/counter`, { method: 'POST', body: value, headers });
  if (res.status !== 200) return { res, id: res.headers.get('ts_request_sequence_id') };
  return { res, id: res.headers.get('ts_request_sequence_id'), counted: (await res.json()) as Counted };
}

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

t.test('a request answered "not run, send it again" is sent again as it was: its start, its end (review-16 F4)', async (t) => {
  // Batches of exactly two: each request goes with another sequence's, a `nan` (which the handler
  // refuses by name: the other is then not run again, as a stateful model's requests never are)
  // or a new sequence's 0.
  const server = await serveCounter(t, { minWorkers: 1, maxWorkers: 1, batchSize: 2, maxBatchDelay: 5000, maxNumSequence: 16 });
  const sendWith = async (partner: string, value: string, id?: string, end = false): Promise<Awaited<ReturnType<typeof send>>> => {
    const [answer, other] = await Promise.all([send(server, value, id, end), send(server, partner)]);
    t.equal(other.res.status, partner === 'nan' ? 400 : 200, `its partner ${partner} is answered`);
    return answer;
  };
  const opener = await sendWith('nan', '1');
  t.equal(opener.res.status, 503, 'the opener was not run');
  t.match(await errorBody(opener.res), { message: /^This request was not run: .*Send it again$/ });
  // A sequence none of whose requests ran is closed, and its answer names none (review-17 F4):
  // sent again as it was, the request opens a sequence anew. Before, the opener's sequence was
  // kept, holding a place for good when its client sent it again without the id.
  t.equal(opener.id, null, 'and names no sequence');
  const again = await sendWith('0', '1');
  t.match(again.counted, { sum: 1, started: true }, 'sent again as it was, it opens a sequence and is its start');
  const id = again.id!;
  t.match((await sendWith('0', '2', id)).counted, { sum: 3, started: false });

  const end = await sendWith('nan', '3', id, true);
  t.equal(end.res.status, 503, 'the end was not run');
  t.equal(end.id, id, 'and names its sequence');
  // Before, taken, the end had closed the sequence: sent again, it was refused, and the handler never saw an end.
  t.match((await sendWith('0', '3', id, true)).counted, { sum: 6 }, 'sent again, the end is run');
  t.equal((await send(server, '4', id)).res.status, 503, 'and the sequence is closed');
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

t.test(
  'gRPC Predictions and StreamPredictions on a stateful model: each answer names its sequence, a failed call in its trailers (review-16 F5)',
  async (t) => {
    const server = await serveCounter(t, { minWorkers: 1, maxWorkers: 1, batchSize: 1, maxNumSequence: 2 });
    const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
    type Answer = { sum?: number; started?: boolean; sequenceId?: string; code: number; details?: string; trailer?: string };
    const predict = (body: string, sequenceId?: string, end = false): Promise<Answer> =>
      new Promise((resolve) => {
        const input: Record<string, Buffer> = { body: Buffer.from(body), ...(end ? { ts_request_sequence_end: Buffer.from('true') } : {}) };
        client.Predictions!({ model_name: 'counter', input, ...(sequenceId ? { sequence_id: sequenceId } : {}) }, new grpc.Metadata(), (err, value) => {
          if (err) {
            resolve({ code: err.code, details: err.details, trailer: err.metadata.get('ts_request_sequence_id')[0] as string | undefined });
            return;
          }
          const counted = JSON.parse((value!.prediction as Buffer).toString()) as Counted;
          resolve({ code: grpc.status.OK, sum: counted.sum, started: counted.started, sequenceId: value!.sequence_id as string });
        });
      });
    const first = await predict('1');
    // Before, a unary call opened a sequence and no answer said which: with sequenceMaxIdleMSec 0 it held its place for good.
    t.match(first, { code: grpc.status.OK, sum: 1, started: true, sequenceId: /^ts-seq-/ }, 'a call without sequence_id opens a sequence and names it');
    t.match(await predict('2', first.sequenceId), { sum: 3, started: false, sequenceId: first.sequenceId }, 'sequence_id continues it');
    t.match(await predict('3', first.sequenceId, true), { sum: 6, sequenceId: first.sequenceId }, 'input ts_request_sequence_end ends it');
    t.match(await predict('4', first.sequenceId), { code: grpc.status.INTERNAL }, 'and it is closed');

    const bad = await predict('bad');
    t.match(
      bad,
      { code: grpc.status.INVALID_ARGUMENT, details: 'Not a number: bad', trailer: /^ts-seq-/ },
      "a failed call's trailers name the sequence it opened",
    );
    t.match(await predict('5', bad.trailer, true), { sum: 5, sequenceId: bad.trailer }, 'so that its client can end it');

    const stream = client.StreamPredictions!({ model_name: 'counter', input: { body: Buffer.from('7') } }, new grpc.Metadata());
    const messages: Array<{ prediction: Buffer; sequence_id?: string }> = [];
    for await (const message of stream) messages.push(message as { prediction: Buffer; sequence_id?: string });
    t.match(messages, [{ sequence_id: /^ts-seq-/ }], "StreamPredictions' message names its sequence too");
  },
);

t.test("OIP gRPC ModelInfer on a stateful model: the response's parameters name its sequence, a failed call's trailers too (review-17 F2)", async (t) => {
  const server = await serveCounter(t, { minWorkers: 1, maxWorkers: 1, batchSize: 1, maxNumSequence: 2 }, { ts_open_inference_protocol: 'true' });
  const client = grpcClient(t, server.urls.grpcInference, 'open_inference_grpc.proto', 'org.pytorch.serve.grpc.openinference.GRPCInferenceService');
  type Answer = { code: number; sum?: number; sequenceId?: string; details?: string; trailer?: string };
  const infer = (name: string, value: number, sequenceId?: string): Promise<Answer> =>
    new Promise((resolve) => {
      const metadata = new grpc.Metadata();
      if (sequenceId) metadata.set('ts_request_sequence_id', sequenceId);
      const request = { model_name: 'counter', inputs: [{ name, datatype: 'FP64', shape: [1], contents: { fp64_contents: [value] } }] };
      client.ModelInfer!(request, metadata, (err, value) => {
        if (err) return resolve({ code: err.code, details: err.details, trailer: err.metadata.get('ts_request_sequence_id')[0] as string | undefined });
        const outputs = value!.outputs as Array<{ contents: { fp64_contents: number[] } }>;
        const parameters = value!.parameters as Record<string, { string_param?: string }>;
        resolve({ code: grpc.status.OK, sum: outputs[0]!.contents.fp64_contents[0], sequenceId: parameters.ts_request_sequence_id?.string_param });
      });
    });
  const first = await infer('x', 1);
  // Before, the call opened a sequence no answer named: with sequenceMaxIdleMSec 0 it held its place for good.
  t.match(first, { code: grpc.status.OK, sum: 1, sequenceId: /^ts-seq-/ }, "a call without the sequence's metadata opens one, and its parameters name it");
  t.match(await infer('x', 2, first.sequenceId), { sum: 3, sequenceId: first.sequenceId }, 'the ts_request_sequence_id metadata continues it');
  const bad = await infer('bad', 0);
  t.match(
    bad,
    { code: grpc.status.INVALID_ARGUMENT, details: 'Not a number: bad', trailer: /^ts-seq-/ },
    "a failed call's trailers name the sequence it opened",
  );
  const metadata = new grpc.Metadata();
  metadata.set('ts_request_sequence_id', bad.trailer!);
  metadata.set('ts_request_sequence_end', 'true');
  const ended = await new Promise<grpc.ServiceError | null>((resolve) =>
    client.ModelInfer!({ model_name: 'counter', inputs: [{ name: 'x', datatype: 'FP64', shape: [1], contents: { fp64_contents: [5] } }] }, metadata, resolve),
  );
  t.equal(ended, null, 'its client ends it');
  t.match(await infer('x', 7), { sum: 7, sequenceId: /^ts-seq-/ }, 'and its place is free again (maxNumSequence 2)');
});

t.test("a sequence whose opener's client went away before its answer is closed, its place free again (review-17 F4)", async (t) => {
  const server = await serveCounter(t, { minWorkers: 1, maxWorkers: 1, batchSize: 1, maxNumSequence: 1 });
  const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService') as unknown as {
    Predictions(request: object, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null) => void): void;
  };
  /** A Predictions call; `once`: a sequence opened and ended by the one request. */
  const predict = (body: string, { deadlineMs, once = false }: { deadlineMs?: number; once?: boolean } = {}): Promise<number> =>
    new Promise((resolve) => {
      const input = { body: Buffer.from(body), ...(once ? { ts_request_sequence_end: Buffer.from('true') } : {}) };
      const options = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
      client.Predictions({ model_name: 'counter', input }, new grpc.Metadata(), options, (err) => resolve(err ? err.code : grpc.status.OK));
    });
  // A sequence opened and ended at once, so that asking holds no place.
  const placeFree = async (): Promise<boolean> => (await send(server, '2', undefined, true)).res.status === 200;

  const gone = new AbortController();
  const rest = fetch(`${server.urls.inference}/predictions/counter`, {
    method: 'POST',
    body: '1 sleep:600',
    signal: gone.signal,
    headers: { 'content-type': 'text/plain' },
  });
  setTimeout(() => gone.abort(), 200);
  await t.rejects(rest, 'the REST client went away before the answer');
  // Before, the sequence its request opened stayed open, named to no one, holding the only place.
  await waitFor(placeFree, 10_000, 'the only place free again once the abandoned request was answered');
  t.pass('the REST sequence was closed');

  t.equal(await predict('1 sleep:600', { deadlineMs: 200 }), grpc.status.DEADLINE_EXCEEDED, "the gRPC call's deadline passed before the answer");
  await waitFor(async () => (await predict('3', { once: true })) === grpc.status.OK, 10_000, 'the only place free again once the abandoned call was answered');
  t.pass('the gRPC sequence was closed');
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, 'the server is up');
});

t.test('a sequence whose worker crashed starts over on the next worker: its next request is the start (review-18 F2)', async (t) => {
  const server = await serveCounter(t, { minWorkers: 1, maxWorkers: 1, batchSize: 1 });
  const first = await send(server, '1');
  t.match(first.counted, { sum: 1, started: true });
  process.kill(first.counted!.pid, 'SIGKILL');
  await waitFor(
    async () => {
      const described = (await (await fetch(`${server.urls.management}/models/counter`)).json()) as Array<{ workers: Array<{ pid: number; status: string }> }>;
      return described[0]!.workers.some((w) => w.status === 'READY' && w.pid !== first.counted!.pid);
    },
    30_000,
    'the crashed worker replaced',
  );
  const next = await send(server, '2', first.id!);
  // Before, the new process got a continuation of a sequence whose state it never had, not told.
  t.match(next.counted, { sum: 2, started: true }, 'the state is gone: the next request is marked as the start');
  t.match((await send(server, '3', first.id!)).counted, { sum: 5, started: false });
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

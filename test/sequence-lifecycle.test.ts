// A stateful model's sequences when things go wrong or come another way: a request answered "not
// run" and sent again, a client gone before its answer, a worker that crashed; and the gRPC methods
// other than StreamPredictions2 (Predictions, StreamPredictions, the Open Inference Protocol's
// ModelInfer), each answer naming its sequence. No sequence holds its place for good.
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { type Counted, send, serveCounter } from './counter-model.js';
import { grpcClient } from './grpc-client.js';
import { errorBody, waitFor } from './helpers.js';

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

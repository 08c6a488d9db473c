// What a batch's failure becomes on the wire: the handler's own errors keep their status, memory
// exhaustion is TorchServe's 507, anything else the generic prediction failure.
import t from 'tap';
import { tsError } from '../errors.js';
import type { WireRequest, WireResponse, WireStage } from '../protocol/messages.js';
import { stage } from './context.js';
import type { EntryPoint } from './load.js';
import { eachInput } from './base-handler.js';
import { withEnvelope } from './envelope.js';
import { answerBatch, toWireError } from './run.js';
import { type Context, InputErrors, PredictionError, type RequestInput } from './types.js';

t.test('toWireError classifies what a handler throws', async (t) => {
  t.match(toWireError(new RangeError('Array buffer allocation failed')), { code: 'TSS_ERR_PREDICTION_OUT_OF_RESOURCES', status: 507 });
  t.match(toWireError(new RangeError('Invalid typed array length: 99999999999')), { code: 'TSS_ERR_PREDICTION_OUT_OF_RESOURCES', status: 507 });
  t.match(toWireError(new RangeError('Maximum call stack size exceeded')), { code: 'TSS_ERR_PREDICTION_FAILED' }, 'another RangeError');
  t.match(toWireError(new TypeError('out of memory')), { code: 'TSS_ERR_PREDICTION_FAILED' }, 'the words alone are not enough');
  t.match(toWireError('out of memory'), { code: 'TSS_ERR_PREDICTION_FAILED' }, 'nor a thrown string');
  t.match(toWireError(new PredictionError('bad image', 400)), { code: 'TSS_ERR_PREDICTION_HANDLER', status: 400, message: 'bad image' });
  t.match(toWireError(tsError('TSS_ERR_WORKER_DIED')), { code: 'TSS_ERR_WORKER_DIED', status: 500 });
});

// A batch the handler refuses for one request's bad input (a 4xx) runs again request by request:
// each gets its own answer. A stateful model's, a 5xx, or a batch that streamed parts is not.
const FACTS = {
  modelName: 'm',
  manifest: { runtime: 'node', model: { modelName: 'm', modelVersion: '1.0' } },
  systemProperties: { model_dir: '.', gpu_id: null, batch_size: 8, server_name: 'tsserve', server_version: 'test', limit_max_image_pixels: true },
  modelYamlConfig: {},
  sequenceIdHeader: 'ts_request_sequence_id',
};

const request = (id: string, body: string): WireRequest => ({
  id,
  headers: {},
  params: [{ name: 'body', contentType: 'text/plain', value: Buffer.from(body) }],
});

/** Doubles each request's number, as one preprocess over the batch: any request not a number refuses the batch. */
function doubler(calls: string[][], onBatch: (context: Context) => void = () => undefined): EntryPoint {
  return {
    initialize: async () => undefined,
    handle: async (batch, context) => {
      calls.push(batch.map((r) => String(r.body)));
      onBatch(context);
      await stage(context, 'preprocess', async () => {
        const bad = batch.find((r) => Number.isNaN(Number(r.body)));
        if (bad) throw new PredictionError(`Not a number: ${String(bad.body)}`, 400);
      });
      context.metrics.addCounter('Doubled', batch.length);
      return batch.map((r) => Number(r.body) * 2);
    },
  };
}

const mixed = [request('a', '1'), request('b', 'GIF89a'), request('c', '3')];

t.test('a batch refused for one request runs each request alone: the valid ones answered, the bad one its own 400', async (t) => {
  const calls: string[][] = [];
  const stages: WireStage[] = [];
  const logged: unknown[] = [];
  const answer = await answerBatch(doubler(calls), FACTS, mixed, true, () => undefined, { stages, onFailure: (err) => logged.push(err) });
  t.same(calls, [['1', 'GIF89a', '3'], ['1'], ['GIF89a'], ['3']], 'the batch, then each request alone once');
  t.ok(answer.split);
  t.same(
    answer.items.map((i) => [i.id, i.status, Buffer.from(i.body).toString()]),
    [
      ['a', 200, '2'],
      ['b', 400, ''],
      ['c', 200, '6'],
    ],
  );
  t.match(answer.items[1]!.error, { code: 'TSS_ERR_PREDICTION_HANDLER', status: 400, message: 'Not a number: GIF89a' });
  t.equal(answer.items[0]!.error, undefined);
  t.equal(logged.length, 1, 'the bad request refused alone is told');
  // Each request counted once: the refused batch's stage for none, each alone run's for one.
  t.same(
    stages.map((s) => [s.name, s.requests]),
    [
      ['preprocess', 0],
      ['preprocess', 1],
      ['preprocess', 1],
      ['preprocess', 1],
    ],
  );
  t.same(
    answer.metrics.filter((m) => m.name === 'Doubled').map((m) => m.value),
    [1, 1],
    'the metrics of the runs that answered, each request once',
  );
});

t.test("a stateful model's refused batch is not run again: its handler may have moved its sequences on", async (t) => {
  const calls: string[][] = [];
  const facts = { ...FACTS, modelYamlConfig: { sequenceBatching: true } };
  await t.rejects(
    answerBatch(doubler(calls), facts, mixed, true, () => undefined),
    { status: 400, message: 'Not a number: GIF89a' },
  );
  t.equal(calls.length, 1);
});

t.test(
  "a stateful model's batch refused for inputs it names: those get their own 400, the others are not run again, and no other client's 400 (review-15 F4)",
  async (t) => {
    const calls: string[][] = [];
    const facts = { ...FACTS, modelYamlConfig: { sequenceBatching: true } };
    const answer = await answerBatch(perInputDoubler(calls), facts, mixed, true, () => undefined);
    t.equal(calls.length, 1, 'run once');
    t.same(
      answer.items.map((i) => [i.id, i.error?.status, i.error?.code]),
      [
        ['a', 503, 'TSS_ERR_PREDICTION_NOT_RUN_AGAIN'],
        ['b', 400, 'TSS_ERR_PREDICTION_HANDLER'],
        ['c', 503, 'TSS_ERR_PREDICTION_NOT_RUN_AGAIN'],
      ],
    );
    // Review-16 F2: its 503 says why, and quotes no other client's input.
    t.equal(
      answer.items[0]!.error?.message,
      "This request was not run: its batch was refused for other requests' inputs, each answered with its own error, and a stateful model's requests are not run again. Send it again",
    );
  },
);

t.test("a not-run 503 quotes at most 200 characters of a refusal naming no request: a handler's message may be megabytes (review-16 F3)", async (t) => {
  const long: EntryPoint = {
    initialize: async () => undefined,
    handle: async () => {
      throw new PredictionError(`Not a number: ${'x'.repeat(3_000_000)}`, 400);
    },
  };
  const answer = await answerBatch(long, FACTS, mixed, true, () => undefined, { budgetMs: 0 });
  for (const item of answer.items) t.ok(item.error!.message.length < 500, `${item.id}: ${item.error!.message.length} characters`);
});

t.test('a batch failed with a 5xx, or refused after it streamed parts, is not run again', async (t) => {
  const calls: string[][] = [];
  const failing: EntryPoint = {
    initialize: async () => undefined,
    handle: async (batch) => {
      calls.push(batch.map((r) => String(r.body)));
      throw new PredictionError('the model failed', 500);
    },
  };
  await t.rejects(
    answerBatch(failing, FACTS, mixed, true, () => undefined),
    { status: 500, message: 'the model failed' },
  );
  t.equal(calls.length, 1, 'a 5xx: the model may have run');
  const streamedCalls: string[][] = [];
  const streaming = doubler(streamedCalls, (context) => context.sendIntermediateResponse(['part', 'part', 'part']));
  const parts: WireResponse[][] = [];
  await t.rejects(
    answerBatch(streaming, FACTS, mixed, true, (items) => parts.push(items)),
    { status: 400, message: 'Not a number: GIF89a' },
  );
  t.equal(streamedCalls.length, 1, 'its clients have parts of an answer already');
  t.equal(parts.length, 1);
});

t.test("past half the batch's response timeout, the requests not yet run alone are not run: a 503 each, not the batch's 400", async (t) => {
  const calls: string[][] = [];
  const answer = await answerBatch(doubler(calls), FACTS, mixed, true, () => undefined, { budgetMs: 0 });
  t.equal(calls.length, 1);
  t.same(
    answer.items.map((i) => [i.id, i.error?.status, i.error?.code]),
    Array.from('abc', (id) => [id, 503, 'TSS_ERR_PREDICTION_NOT_RUN_AGAIN']),
  );
  // Review-15 F3: which input it was about is not known, and the bad one's client must be able to tell it is his.
  t.equal(
    answer.items[1]!.error?.message,
    "This request was not run: its batch was refused with a client's error that names no request (Not a number: GIF89a), and too little of the response timeout was left to run it again. Send it again, unless that error is about its input",
  );
});

t.test('a request starts alone only if it may end within half the timeout, taking as long as the refused batch did (review-9 F2)', async (t) => {
  // The batch is refused after 90 ms of a 200 ms budget: a lone run starting then, as long again,
  // would end past half of it (and one of 150 ms past the whole, the worker killed for it).
  const calls: string[][] = [];
  const slow: EntryPoint = {
    initialize: async () => undefined,
    handle: async (batch) => {
      calls.push(batch.map((r) => String(r.body)));
      await new Promise((r) => setTimeout(r, batch.length > 1 ? 90 : 150));
      const bad = batch.find((r) => Number.isNaN(Number(r.body)));
      if (bad) throw new PredictionError(`Not a number: ${String(bad.body)}`, 400);
      return batch.map((r) => Number(r.body) * 2);
    },
  };
  const answer = await answerBatch(slow, FACTS, mixed, true, () => undefined, { budgetMs: 200 });
  t.equal(calls.length, 1, 'no request ran alone');
  t.same(
    answer.items.map((i) => [i.error?.status, i.error?.code]),
    Array.from('abc', () => [503, 'TSS_ERR_PREDICTION_NOT_RUN_AGAIN']),
    "each not run again: which one was refused is not known, and a valid one's client is told no other's 400",
  );
});

t.test('a batch of one refused is its own answer', async (t) => {
  const calls: string[][] = [];
  await t.rejects(
    answerBatch(doubler(calls), FACTS, [request('b', 'GIF89a')], true, () => undefined),
    { status: 400, message: 'Not a number: GIF89a' },
  );
  t.equal(calls.length, 1);
});

/** As doubler, its preprocess reading each input for itself (eachInput): the refused ones are named. */
function perInputDoubler(calls: string[][]): EntryPoint {
  return {
    initialize: async () => undefined,
    handle: async (batch, context) => {
      calls.push(batch.map((r) => String(r.body)));
      const numbers = await stage(context, 'preprocess', () =>
        eachInput(batch, (r) => {
          const n = Number(r.body);
          if (Number.isNaN(n)) throw new PredictionError(`Not a number: ${String(r.body)}`, 400);
          return n;
        }),
      );
      if (new Set(numbers.map((n) => n < 0)).size > 1) throw new PredictionError('Signs differ', 400);
      context.metrics.addCounter('Doubled', batch.length);
      return numbers.map((n) => n * 2);
    },
  };
}

t.test('a batch refused for inputs it names runs once more without them, not request by request; one of only bad inputs runs once', async (t) => {
  const calls: string[][] = [];
  const stages: WireStage[] = [];
  const logged: unknown[] = [];
  const answer = await answerBatch(perInputDoubler(calls), FACTS, [...mixed, request('d', 'x')], true, () => undefined, {
    stages,
    onFailure: (err) => logged.push(err),
  });
  t.same(
    calls,
    [
      ['1', 'GIF89a', '3', 'x'],
      ['1', '3'],
    ],
    'the batch, then the valid requests together',
  );
  t.ok(answer.split);
  t.same(
    answer.items.map((i) => [i.id, i.status, i.error?.message ?? Buffer.from(i.body).toString()]),
    [
      ['a', 200, '2'],
      ['b', 400, 'Not a number: GIF89a'],
      ['c', 200, '6'],
      ['d', 400, 'Not a number: x'],
    ],
  );
  t.equal(logged.length, 2, 'each refused request is told');
  t.same(
    stages.map((s) => [s.name, s.requests]),
    [
      ['preprocess', 0],
      ['preprocess', 2],
    ],
    "the refused batch's stage for none, the valid ones' run for both",
  );
  t.same(
    answer.metrics.filter((m) => m.name === 'Doubled').map((m) => m.value),
    [2],
  );

  const allBad: string[][] = [];
  const bad = await answerBatch(perInputDoubler(allBad), FACTS, [request('b', 'GIF89a'), request('d', 'x')], true, () => undefined);
  t.same(allBad, [['GIF89a', 'x']], 'only bad inputs: one run');
  t.same(
    bad.items.map((i) => [i.id, i.error?.message]),
    [
      ['b', 'Not a number: GIF89a'],
      ['d', 'Not a number: x'],
    ],
  );

  const again: string[][] = [];
  const refusedAgain = await answerBatch(perInputDoubler(again), FACTS, [request('a', '1'), request('b', 'GIF89a'), request('c', '-3')], true, () => undefined);
  t.same(again, [['1', 'GIF89a', '-3'], ['1', '-3'], ['1'], ['-3']], 'the rest refused as a batch, for no input it names: each alone');
  t.same(
    refusedAgain.items.map((i) => i.status),
    [200, 400, 200],
  );
});

t.test("a refused request's answer leaves before the others run again (review-13 F6)", async (t) => {
  const calls: string[][] = [];
  const early: Array<[number, Array<[string, number]>]> = [];
  const sentEarly = (items: WireResponse[]): void => {
    t.ok(
      items.every((i) => i.final || i.error),
      'each a final answer (an error is one), not a streamed part',
    );
    early.push([calls.length, items.map((i) => [i.id, i.status])]);
  };
  await answerBatch(perInputDoubler(calls), FACTS, [...mixed, request('d', 'x')], true, sentEarly);
  t.same(
    early,
    [
      [
        1,
        [
          ['b', 400],
          ['d', 400],
        ],
      ],
    ],
    'the refusals named by the batch, after its run and before the re-run',
  );

  calls.length = 0;
  early.length = 0;
  await answerBatch(doubler(calls), FACTS, mixed, true, sentEarly);
  t.same(
    early,
    [
      [2, [['a', 200]]],
      [3, [['b', 400]]],
      [4, [['c', 200]]],
    ],
    'each request run alone: its answer as its run ends, before the next request runs (review-14 F2: the 200s too)',
  );
});

t.test("a batch refused for inputs it names, past half the response timeout: the refused get their own 400, the rest a 503, not another's 400", async (t) => {
  const calls: string[][] = [];
  const answer = await answerBatch(perInputDoubler(calls), FACTS, mixed, true, () => undefined, { budgetMs: 0 });
  t.equal(calls.length, 1);
  t.same(
    answer.items.map((i) => [i.id, i.error?.status, i.error?.code]),
    [
      ['a', 503, 'TSS_ERR_PREDICTION_NOT_RUN_AGAIN'],
      ['b', 400, 'TSS_ERR_PREDICTION_HANDLER'],
      ['c', 503, 'TSS_ERR_PREDICTION_NOT_RUN_AGAIN'],
    ],
  );
});

t.test('eachInput names the inputs refused with a 4xx; any other failure is thrown as it is', async (t) => {
  const rows = [{ body: '1' }, { body: 'x' }, { body: 'boom' }];
  const read = (r: { body?: unknown }): number => {
    if (r.body === 'boom') throw new Error('boom');
    if (r.body === 'x') throw new PredictionError('Not a number: x', 400);
    return Number(r.body);
  };
  await t.rejects(eachInput(rows, read), { message: 'boom' }, 'a failure of the handler, not of an input');
  const refused = await eachInput(rows.slice(0, 2), read).catch((err: unknown) => err);
  t.match(refused, { status: 400, message: 'Not a number: x' }, "the batch's error is the first refused input's");
  t.same([...(refused as { errors: Map<number, Error> }).errors.keys()], [1]);
  t.same(await eachInput(rows.slice(0, 1), read), [1]);
});

t.test("behind an envelope, a refusal of rows it names is its requests': each answered by its first refused row, the others run again together", async (t) => {
  const calls: string[][] = [];
  const json = (id: string, instances: unknown[]): WireRequest => ({
    id,
    headers: {},
    params: [{ name: 'body', contentType: 'application/json', value: Buffer.from(JSON.stringify({ instances })) }],
  });
  const batch = [json('a', [1, 2]), json('b', [3, 'x', 'z']), json('c', ['y']), json('d', [5])];
  const answer = await answerBatch(withEnvelope(perInputDoubler(calls), 'json'), FACTS, batch, true, () => undefined);
  t.same(
    calls,
    [
      ['1', '2', '3', 'x', 'z', 'y', '5'],
      ['1', '2', '5'],
    ],
    'the rows, then the rows of the requests not refused',
  );
  t.same(
    answer.items.map((i) => [i.id, i.status, i.error?.message ?? JSON.parse(Buffer.from(i.body).toString())]),
    [
      ['a', 200, { predictions: [2, 4] }],
      ['b', 400, 'Not a number: x'],
      ['c', 400, 'Not a number: y'],
      ['d', 200, { predictions: [10] }],
    ],
  );
});

t.test("a request an envelope cannot read is answered at once, before its handler runs the others, a stateful model's too (review-14 F1)", async (t) => {
  const calls: string[][] = [];
  const json = (id: string, body: string): WireRequest => ({
    id,
    headers: {},
    params: [{ name: 'body', contentType: 'application/json', value: Buffer.from(body) }],
  });
  const batch = [json('a', '{"instances": [1]}'), json('b', '{"inputs": []}'), json('c', '{"instances": [3]}')];
  const early: Array<[number, Array<[string, number | undefined]>]> = [];
  const facts = { ...FACTS, modelYamlConfig: { sequenceBatching: true } };
  const answer = await answerBatch(withEnvelope(doubler(calls), 'kserve'), facts, batch, true, (items) => {
    early.push([calls.length, items.map((i) => [i.id, i.error?.status])]);
  });
  t.same(early, [[0, [['b', 400]]]], 'its 400 leaves before the handler is called');
  t.same(calls, [['1', '3']], 'the others run once, together: none had reached the handler');
  t.same(
    answer.items.map((i) => [i.id, i.status, i.error?.message ?? JSON.parse(Buffer.from(i.body).toString())]),
    [
      ['a', 200, { predictions: [2] }],
      ['b', 400, 'Expected a JSON body {"instances": [...]}'],
      ['c', 200, { predictions: [6] }],
    ],
  );
});

t.test('a refusal naming no request of the batch (eachInput over more than it) has each request run alone, not the batch again and again', async (t) => {
  const calls: string[][] = [];
  const overMore: EntryPoint = {
    initialize: async () => undefined,
    handle: async (batch) => {
      calls.push(batch.map((r) => String(r.body)));
      await eachInput([...batch, { body: 'x' }], (r) => {
        if (Number.isNaN(Number(r.body))) throw new PredictionError(`Not a number: ${String(r.body)}`, 400);
      });
      return batch.map(() => 'never');
    },
  };
  const answer = await answerBatch(overMore, FACTS, [request('a', '1'), request('b', '2')], true, () => undefined);
  t.same(calls, [['1', '2'], ['1'], ['2']]);
  t.same(
    answer.items.map((i) => i.error?.message),
    ['Not a number: x', 'Not a number: x'],
  );
});

t.test(
  'a refusal is read by the array it names (review-13 F1-F3): a slice blames no other client, and no index outside the batch runs it again and again',
  async (t) => {
    const refusing = (calls: string[][], refuse: (batch: RequestInput[]) => Promise<unknown>): EntryPoint => ({
      initialize: async () => undefined,
      handle: async (batch) => {
        calls.push(batch.map((r) => String(r.body)));
        await refuse(batch);
        return batch.map((r) => Number(r.body) * 2);
      },
    });
    const notANumber = (r: { body?: unknown }): void => {
      if (Number.isNaN(Number(r.body))) throw new PredictionError(`Not a number: ${String(r.body)}`, 400);
    };
    const statuses = (answer: { items: WireResponse[] }): Array<[string, number]> => answer.items.map((i) => [i.id, i.status]);
    const abc = [request('a', '1'), request('b', 'x'), request('c', '3')];

    const sliced: string[][] = [];
    const slice = await answerBatch(
      refusing(sliced, (batch) => eachInput(batch.slice(1), notANumber)),
      FACTS,
      abc,
      true,
      () => undefined,
    );
    t.same(sliced, [['1', 'x', '3'], ['1'], ['x'], ['3']], "eachInput over a slice: its indices are not the batch's, each request runs alone");
    // Alone, each reads an empty slice, so b too answers 200; before, a was answered b's 400.
    t.same(
      statuses(slice),
      [
        ['a', 200],
        ['b', 200],
        ['c', 200],
      ],
      'a is not blamed for b',
    );

    const outside: string[][] = [];
    const err = new PredictionError('refused', 400);
    const forged = refusing(outside, async (batch) => {
      throw new InputErrors(
        new Map([
          [-1, err],
          [0.5, err],
          [batch.length, err],
        ]),
        batch,
      );
    });
    const answer = await answerBatch(forged, FACTS, abc, true, () => undefined);
    t.equal(outside.length, 4, 'indices outside the batch name none of it: the batch, then each alone, not thousands of runs');
    t.same(statuses(answer), [
      ['a', 400],
      ['b', 400],
      ['c', 400],
    ]);

    const holed: string[][] = [];
    const hole = refusing(holed, async (batch) => {
      if (batch.length === 3)
        throw new InputErrors(
          new Map([
            [1, err],
            [0, undefined as unknown as PredictionError],
          ]),
          batch,
        );
    });
    const holes = await answerBatch(hole, FACTS, abc, true, () => undefined);
    t.same(
      holed,
      [
        ['1', 'x', '3'],
        ['1', '3'],
      ],
      'an index without an error names nothing',
    );
    t.same(
      holes.items.map((i) => [i.id, i.status, i.error?.message ?? Buffer.from(i.body).toString()]),
      [
        ['a', 200, '2'],
        ['b', 400, 'refused'],
        ['c', 200, '6'],
      ],
      'each request its own answer',
    );
  },
);

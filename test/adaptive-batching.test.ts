// Adaptive batching in a real server (issue 34): a model with no batch keys answers a lone request
// as a batch of one, forms larger batches under concurrent load with the same answers, and a
// model exported with a fixed batch of 1 is never sent more. The decision itself, on a clock the
// test moves, is src/batching/adaptive.test.ts's. A restart from a config snapshot keeps the policy;
// a batch-1 model's worker warms itself with batches it takes.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { parseProperties } from '../dist/src/config/properties.js';
import { buildMar, FIXTURES, metric, startTestServer, waitFor, type TestServer } from './helpers.js';

function solid(r: number, g: number, b: number): Promise<Buffer> {
  return sharp({ create: { width: 40, height: 30, channels: 3, background: { r, g, b } } })
    .png()
    .toBuffer();
}

/** A server with colour_classifier `onnx` archived with image_classifier as `name`.mar and nothing else set. */
function serveClassifier(t: Parameters<typeof startTestServer>[0], name: string, onnx: string): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: name, version: '1.0', handler: 'image_classifier', serializedFile: join(FIXTURES, onnx) }),
    properties: { load_models: `${name}.mar` },
  });
}

async function classify(server: TestServer, name: string, body: Buffer): Promise<{ status: number; text: string }> {
  const res = await fetch(`${server.urls.inference}/predictions/${name}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'image/png' },
    signal: AbortSignal.timeout(60_000),
  });
  return { status: res.status, text: await res.text() };
}

/** `count` requests, `concurrency` at a time, the ith of images[i % images.length]; each answer with its image's index. */
async function load(
  server: TestServer,
  name: string,
  images: Buffer[],
  count: number,
  concurrency: number,
): Promise<Array<{ image: number; status: number; text: string }>> {
  const answers: Array<{ image: number; status: number; text: string }> = [];
  let next = 0;
  const client = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) {
      const image = i % images.length;
      answers.push({ image, ...(await classify(server, name, images[image]!)) });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  return answers;
}

const batches = async (server: TestServer, name: string): Promise<{ count: number; sum: number }> => ({
  count: await metric(server, 'ts_batch_size_count', name),
  sum: await metric(server, 'ts_batch_size_sum', name),
});

interface Described {
  batchSize: number;
  maxBatchDelay: number;
  batching: { policy: string; batchSize: number; meanBatch: number; latencyTargetMs: number; fixedMs: number | null; perItemMs: number | null };
}

t.test('no batch keys: a lone request runs alone, concurrent ones in batches larger than one, with the answers it gives alone', async (t) => {
  const server = await serveClassifier(t, 'colours', 'colour_classifier.onnx');
  const images = await Promise.all([solid(250, 10, 10), solid(10, 250, 10), solid(10, 10, 250), solid(120, 130, 10)]);
  const alone: string[] = [];
  for (const image of images) {
    const { status, text } = await classify(server, 'colours', image);
    t.equal(status, 200);
    alone.push(text);
  }
  const lone = await batches(server, 'colours');
  t.same(lone, { count: images.length, sum: images.length }, 'one at a time: every batch held one request');

  const answers = await load(server, 'colours', images, 64, 32);
  t.equal(answers.length, 64);
  t.same(
    answers.filter((a) => a.status !== 200 || a.text !== alone[a.image]),
    [],
    "every answer is 200 and the same as its image's answer alone",
  );
  const loaded = await batches(server, 'colours');
  t.equal(loaded.sum - lone.sum, 64, 'every request ran once');
  const meanBatch = (loaded.sum - lone.sum) / (loaded.count - lone.count);
  t.ok(meanBatch > 1, `batches larger than one formed (${loaded.count - lone.count} batches, mean ${meanBatch.toFixed(2)})`);

  const [described] = (await (await fetch(`${server.urls.management}/models/colours`)).json()) as Described[];
  t.match(described, { batchSize: 1, maxBatchDelay: 100 }, "describe's TorchServe fields keep their defaults");
  t.match(described!.batching, { policy: 'adaptive', latencyTargetMs: 100 }, 'and says the policy');
  t.ok(described!.batching.batchSize >= 1 && described!.batching.batchSize <= 8, `the batch size it chooses now: ${described!.batching.batchSize}`);
  t.ok(described!.batching.perItemMs !== null && described!.batching.fixedMs !== null, 'from a fit of measured batch times');
});

t.test('a model exported with a fixed batch of 1 is never sent more, and answers every concurrent request', async (t) => {
  const server = await serveClassifier(t, 'single', 'colour_classifier_batch1.onnx');
  const images = await Promise.all([solid(250, 10, 10), solid(10, 10, 250)]);
  // Sixteen clients, one request each: all sixteen queued at once.
  const answers = await load(server, 'single', images, 16, 16);
  t.same(
    answers.map((a) => a.status),
    Array(16).fill(200),
    'every request answered 200',
  );
  t.same(await batches(server, 'single'), { count: 16, sum: 16 }, 'in batches of one');
  const [described] = (await (await fetch(`${server.urls.management}/models/single`)).json()) as Described[];
  t.equal(described!.batching.batchSize, 1, 'describe says the batch size is 1');
});

t.test("TorchServe's batch_size keeps its meaning: describe says the fixed policy", async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) =>
      buildMar(store, { modelName: 'fixed', version: '1.0', handler: 'image_classifier', serializedFile: join(FIXTURES, 'colour_classifier.onnx') }),
  });
  // No worker: the policy is the registration's (config/model-config.ts), and the model is never called.
  const res = await fetch(`${server.urls.management}/models?url=fixed.mar&initial_workers=0&synchronous=true&batch_size=4&max_batch_delay=30`, {
    method: 'POST',
  });
  t.equal(res.status, 200, await res.text());
  const [described] = (await (await fetch(`${server.urls.management}/models/fixed`)).json()) as Described[];
  t.match(described, { batchSize: 4, maxBatchDelay: 30, batching: { policy: 'fixed', batchSize: 4, maxBatchDelay: 30 } });
});

t.test('in one shared host, a model exported with batch 1 and one with a dynamic batch each keep their own limit', async (t) => {
  // Shared workers spread over as many hosts as cores before two share one: one model more than
  // cores beside the batch-1 one puts a dynamic model in its host.
  const dynamic = Array.from({ length: availableParallelism() }, (_, i) => `colours${i}`);
  const server = await startTestServer(t, {
    prepare: (store) => {
      buildMar(store, { modelName: 'single', version: '1.0', handler: 'image_classifier', serializedFile: join(FIXTURES, 'colour_classifier_batch1.onnx') });
      for (const name of dynamic)
        buildMar(store, { modelName: name, version: '1.0', handler: 'image_classifier', serializedFile: join(FIXTURES, 'colour_classifier.onnx') });
    },
    // Every file is far under 1 MB: all share.
    properties: { load_models: ['single', ...dynamic].map((n) => `${n}.mar`).join(','), shared_worker_model_mb: '1' },
  });
  const pidOf = async (name: string): Promise<number> =>
    ((await (await fetch(`${server.urls.management}/models/${name}`)).json()) as Array<{ workers: Array<{ pid: number; sharedHost: boolean }> }>)[0]!
      .workers[0]!.pid;
  const host = await pidOf('single');
  const neighbours = [];
  for (const name of dynamic) if ((await pidOf(name)) === host) neighbours.push(name);
  t.ok(neighbours.length > 0, `a dynamic model shares the batch-1 model's process: ${neighbours.join(', ')}`);
  const neighbour = neighbours[0]!;
  const images = await Promise.all([solid(250, 10, 10), solid(10, 10, 250)]);
  const answers = (await Promise.all([load(server, 'single', images, 16, 8), load(server, neighbour, images, 64, 32)])).flat();
  t.same(
    answers.filter((a) => a.status !== 200),
    [],
    'every request answered 200',
  );
  t.same(await batches(server, 'single'), { count: 16, sum: 16 }, 'the batch-1 model in batches of one');
  const formed = await batches(server, neighbour);
  t.ok(
    formed.sum / formed.count > 1,
    `its neighbour in larger batches (mean ${(formed.sum / formed.count).toFixed(2)}): the limit is the model's, not the process's`,
  );
});

t.test('a restart from the config snapshot keeps adaptive batching for a model registered with no batch keys', async (t) => {
  const archive = (store: string): string =>
    buildMar(store, { modelName: 'colours', version: '1.0', handler: 'image_classifier', serializedFile: join(FIXTURES, 'colour_classifier.onnx') });
  const first = await startTestServer(t, { prepare: archive, cli: { ncs: false } });
  // No worker, before or after the restart: the policy comes from the registration and the snapshot, and nothing is predicted.
  const registered = await fetch(`${first.urls.management}/models?url=colours.mar&initial_workers=0&synchronous=true`, { method: 'POST' });
  t.equal(registered.status, 200, await registered.text());
  const policy = async (server: TestServer): Promise<Described> =>
    ((await (await fetch(`${server.urls.management}/models/colours`)).json()) as Described[])[0]!;
  t.equal((await policy(first)).batching.policy, 'adaptive', 'adaptive as registered');
  const dir = join(first.dir, 'logs', 'config');
  const newest = readdirSync(dir)
    .filter((f) => f.endsWith('-snapshot.cfg'))
    .sort()
    .at(-1)!;
  const snapshot = JSON.parse(parseProperties(readFileSync(join(dir, newest), 'utf8'), {}).get('model_snapshot')!);
  t.match(snapshot, { models: { colours: { '1.0': { batchSize: 1, maxBatchDelay: 100 } } } }, "the snapshot keeps TorchServe's fields");
  await first.close();

  const restarted = await startTestServer(t, { prepare: archive, properties: { model_snapshot: JSON.stringify(snapshot) }, cli: { ncs: false } });
  const described = await policy(restarted);
  t.match(described, { batchSize: 1, maxBatchDelay: 100 }, "describe's TorchServe fields as before");
  t.match(described.batching, { policy: 'adaptive', latencyTargetMs: 100 }, 'and the policy it had: adaptive');
});

t.test("a batch-1 model's worker warms itself with batches of one, which it takes, not the ceiling's 8", async (t) => {
  const png = await solid(250, 10, 10);
  const server = await startTestServer(t, {
    prepare: (store) => {
      const yaml = join(store, '..', 'single.yaml');
      const sample = join(store, '..', 'sample.png');
      writeFileSync(yaml, 'warmupFile: sample.png\n');
      writeFileSync(sample, png);
      buildMar(store, {
        modelName: 'single',
        version: '1.0',
        handler: 'image_classifier',
        serializedFile: join(FIXTURES, 'colour_classifier_batch1.onnx'),
        configFile: yaml,
        extraFiles: sample,
      });
    },
  });
  const registered = await fetch(`${server.urls.management}/models?url=single.mar&initial_workers=1&synchronous=true`, { method: 'POST' });
  t.equal(registered.status, 200, await registered.text());
  const modelLog = join(server.dir, 'logs', 'model_log.log');
  const log = (): string => (existsSync(modelLog) ? readFileSync(modelLog, 'utf8') : '');
  await waitFor(() => log().includes('Warm-up of model single') || log().includes('Warm-up failed for model single'), 10_000, 'the warm-up said');
  t.notMatch(log(), /Warm-up failed for model single/, 'no warm-up batch failed');
  const batches = Number(/Warm-up of model single with sample.png: (\d+) batches/.exec(log())?.[1]);
  // How many fit in the warm-up's time is the machine's (a loaded CI run had 1); that none failed
  // is the claim: before, the first was the ceiling's 8, failed, and ended the warm-up.
  t.ok(batches >= 1, `the warm-up ran: ${batches} batches`);
});

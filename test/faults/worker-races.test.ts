// Racing management calls never leak a worker: twenty clients register, unregister and scale the
// same two names at once (REST and gRPC, synchronous and not, 0-3 workers), and afterwards every
// worker process the server has belongs to exactly one registered model version. Each overlapping
// call answers what TorchServe would (404 once unregistered, 409 when the version exists), never
// a 500 for a worker start nobody failed.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { grpcClient, unaryCall, type GrpcClient } from '../grpc-client.js';
import { buildMar, FIXTURES, seededRandom, startTestServer, type TestServer, waitFor } from '../helpers.js';
import { describeAll, survived, workerPids } from './survival.js';

const NAMES = ['race', 'race2'];
const CLIENTS = 20;
/**
 * Long enough to catch what it was written for: before the fix (a06aa46) a race of 5 s answered
 * an unexpected status (500, or gRPC INTERNAL) in 3 of 3 runs, the first after 1.5, 3.4 and 4.4 s,
 * and left workers outside any model in 2 of them; one of 8 s did both in 2 of 2.
 */
const RACE_MS = 8_000;
/** Calls per client at most, whatever the time: the loop is bounded both ways. */
const CALLS_PER_CLIENT = 80;
const ALLOWED = new Set([200, 202, 206, 400, 404, 409]);
/** gRPC statuses of those: OK, INVALID_ARGUMENT, NOT_FOUND, ABORTED (409). */
const GRPC_ALLOWED = new Set([0, 3, 5, 10]);

interface Call {
  readonly what: string;
  readonly status: number;
  readonly body: string;
}

function restCall(server: TestServer, rnd: () => number): Promise<Call> {
  const name = NAMES[Math.floor(rnd() * NAMES.length)]!;
  const workers = String(Math.floor(rnd() * 4));
  const synchronous = String(rnd() < 0.5);
  const op = rnd();
  const m = server.urls.management;
  const [method, url] =
    op < 0.35
      ? ['POST', `${m}/models?${new URLSearchParams({ url: 'slow.mar', model_name: name, initial_workers: workers, synchronous })}`]
      : op < 0.6
        ? ['DELETE', `${m}/models/${name}`]
        : ['PUT', `${m}/models/${name}?${new URLSearchParams({ min_worker: workers, synchronous })}`];
  return fetch(url, { method, signal: AbortSignal.timeout(60_000) }).then(async (res) => ({
    what: `${method} ${url}`,
    status: res.status,
    body: await res.text(),
  }));
}

async function grpcCall(client: GrpcClient, rnd: () => number): Promise<Call> {
  const name = NAMES[Math.floor(rnd() * NAMES.length)]!;
  const workers = Math.floor(rnd() * 4);
  const synchronous = rnd() < 0.5;
  const op = rnd();
  const [method, request] =
    op < 0.35
      ? ['RegisterModel', { url: 'slow.mar', model_name: name, initial_workers: workers, synchronous }]
      : op < 0.6
        ? ['UnregisterModel', { model_name: name }]
        : ['ScaleWorker', { model_name: name, min_worker: workers, synchronous }];
  const answer = await unaryCall(client, method, request);
  return { what: `gRPC ${method} ${JSON.stringify(request)}`, status: answer.code, body: answer.details ?? '' };
}

interface Settling {
  minWorkers: number;
  workers: Array<{ pid: number; status: string }>;
}

/** Scaling has settled: each version has its minimum of READY workers, and no other worker process is left. */
async function settled(server: TestServer): Promise<boolean> {
  const described = (await describeAll(server.urls.management)) as unknown as Settling[];
  const ready = described.every((d) => d.workers.length === d.minWorkers && d.workers.every((w) => w.status === 'READY'));
  const owned = described.flatMap((d) => d.workers.map((w) => w.pid));
  return ready && workerPids(process.pid).length === owned.length;
}

t.test(`${CLIENTS} clients register, unregister and scale two names for ${RACE_MS / 1000} s: no worker outside a model, no 500`, async (t) => {
  // Workers that take 300 ms to load, as a real model's do: the calls overlap worker starts.
  const server = await startTestServer(t, {
    prepare: (store) => {
      const configFile = join(store, '..', 'model-config.yaml');
      writeFileSync(configFile, 'loadMs: 300\n');
      buildMar(store, { modelName: 'slow', version: '1.0', handler: join(FIXTURES, 'lifetime_handler.ts'), configFile });
    },
    // A request queued for a model whose workers are all being retired waits 2 s at most.
    properties: { default_queue_timeout: '2' },
  });
  const grpc = grpcClient(t, server.urls.grpcManagement, 'management.proto', 'org.pytorch.serve.grpc.management.ManagementAPIsService');
  const deadline = Date.now() + RACE_MS;
  const unexpected: Call[] = [];
  const statuses = new Map<string, number>();
  let sent = 0;
  let answered = 0;
  const client = async (i: number): Promise<void> => {
    // Each run makes the same calls; their timing differs.
    const rnd = seededRandom(1000 + i);
    for (let n = 0; n < CALLS_PER_CLIENT && Date.now() < deadline; n++) {
      sent++;
      const overGrpc = i % 4 === 3;
      const call = overGrpc ? await grpcCall(grpc, rnd) : await restCall(server, rnd);
      answered++;
      const key = `${overGrpc ? 'grpc' : 'rest'} ${call.status}`;
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
      if (!(overGrpc ? GRPC_ALLOWED : ALLOWED).has(call.status)) unexpected.push(call);
    }
  };
  // Requests that keep the workers busy: a scale-down waits for a worker's batch, an unregister
  // drains, and the calls overlap for that long.
  const predictions = async (i: number): Promise<void> => {
    for (let n = 0; n < CALLS_PER_CLIENT && Date.now() < deadline; n++) {
      const res = await fetch(`${server.urls.inference}/predictions/${NAMES[i % NAMES.length]}`, { method: 'POST', body: 'sleep:100' });
      await res.arrayBuffer();
      if (res.status === 404 || res.status === 503) await new Promise((r) => setTimeout(r, 20));
    }
  };
  await Promise.all([...Array.from({ length: CLIENTS }, (_, i) => client(i)), ...Array.from({ length: 4 }, (_, i) => predictions(i))]);
  t.comment(`race over after ${Date.now() - deadline + RACE_MS} ms`);
  t.comment(`answers: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  t.same(unexpected.slice(0, 5), [], `only 200/202/206/400/404/409 (gRPC OK/INVALID_ARGUMENT/NOT_FOUND/ABORTED): ${unexpected.length} others`);

  await waitFor(() => settled(server), 30_000, 'scaling to settle').catch(() => {
    /* survived() below says what is left over */
  });
  await survived(t, server, { sent, answered });
});

// Worker counts are bounded: a register or scale request asking for more workers than
// max_workers_per_model is refused at once with a 400 that names the limit and the key, over REST
// and gRPC, and the server stays responsive; a model-config.yaml asking for more is cut to it. The
// default limit follows from the machine's cores and memory.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { derivedWorkerLimit } from '../../dist/src/config/server-config.js';
import { describe, register } from '../echo-model.js';
import { grpcClient, unaryCall } from '../grpc-client.js';
import { buildMar, FIXTURES, startTestServer } from '../helpers.js';
import { survived } from './survival.js';

const LIMIT = 2;
const GiB = 1024 ** 3;

t.test('the default limit: four workers a core, one per 256 MiB of memory at most, at least one', async (t) => {
  t.equal(derivedWorkerLimit(2, 24 * GiB), 8);
  t.equal(derivedWorkerLimit(64, 2 * GiB), 8);
  t.equal(derivedWorkerLimit(1, 128 * 1024 ** 2), 1);
});

t.test(`with max_workers_per_model=${LIMIT}: more workers asked for are refused at once, or cut when configured`, async (t) => {
  const logged: string[] = [];
  const server = await startTestServer(t, {
    prepare: (store) => {
      const handler = join(FIXTURES, 'echo_handler.ts');
      buildMar(store, { modelName: 'echo', version: '1.0', handler });
      const configFile = join(store, '..', 'model-config.yaml');
      writeFileSync(configFile, 'minWorkers: 8\nmaxWorkers: 8\n');
      buildMar(store, { modelName: 'many', version: '1.0', handler, configFile });
    },
    properties: { max_workers_per_model: String(LIMIT) },
    serverLog: (line) => logged.push(line),
  });
  const m = server.urls.management;
  await register(t, server, 'echo', { initial_workers: 1 });
  const refusal = (param: string, n: number): Record<string, unknown> => ({
    code: 400,
    type: 'BadRequestException',
    message: `${param}=${n} is more than the ${LIMIT} workers a model version may have on this server (max_workers_per_model)`,
  });

  // A count the unguarded server could still fork without harm, first: only once that is refused
  // is ten thousand asked for.
  const modest = await fetch(`${m}/models/echo?min_worker=6&synchronous=true`, { method: 'PUT' });
  t.equal(modest.status, 400, 'six workers over a limit of two: refused');
  t.same(await modest.json(), refusal('min_worker', 6));
  t.equal((await describe(server, 'echo')).workers.length, 1, 'the model keeps its one worker');
  if (modest.status !== 400) return;

  const [huge, ping] = await Promise.all([
    fetch(`${m}/models/echo?min_worker=10000&synchronous=true`, { method: 'PUT' }),
    fetch(`${server.urls.inference}/ping`),
  ]);
  t.equal(huge.status, 400, 'min_worker=10000: refused');
  t.same(await huge.json(), refusal('min_worker', 10000), 'the message names the count, the limit and the key');
  t.equal(ping.status, 200, '/ping answers meanwhile');
  const wideMax = await fetch(`${m}/models/echo?min_worker=1&max_worker=10000`, { method: 'PUT' });
  t.same([wideMax.status, await wideMax.json()], [400, refusal('max_worker', 10000)], 'max_worker=10000: refused');
  t.equal((await describe(server, 'echo')).workers.length, 1, 'still one worker');

  const registered = await fetch(`${m}/models?url=echo.mar&model_name=crowd&initial_workers=10000`, { method: 'POST' });
  t.same([registered.status, await registered.json()], [400, refusal('initial_workers', 10000)], 'register with initial_workers=10000: refused');
  t.equal((await fetch(`${m}/models/crowd`)).status, 404, 'and not registered');

  const grpc = grpcClient(t, server.urls.grpcManagement, 'management.proto', 'org.pytorch.serve.grpc.management.ManagementAPIsService');
  t.same(
    await unaryCall(grpc, 'ScaleWorker', { model_name: 'echo', min_worker: 10000, synchronous: true }),
    { code: 3, details: refusal('min_worker', 10000).message },
    'gRPC ScaleWorker: INVALID_ARGUMENT with the same message',
  );
  t.same(
    await unaryCall(grpc, 'RegisterModel', { url: 'echo.mar', model_name: 'crowd', initial_workers: 10000, synchronous: true }),
    { code: 3, details: refusal('initial_workers', 10000).message },
    'gRPC RegisterModel: INVALID_ARGUMENT',
  );

  // model-config.yaml's minWorkers 8 is configuration: cut to the limit, said in the log.
  const many = await fetch(`${m}/models?url=many.mar&synchronous=true`, { method: 'POST' });
  t.equal(many.status, 200, `a model-config.yaml asking for 8 workers registers: ${await many.text()}`);
  const [described] = (await (await fetch(`${m}/models/many`)).json()) as Array<{ minWorkers: number; maxWorkers: number; workers: unknown[] }>;
  t.same([described!.minWorkers, described!.maxWorkers, described!.workers.length], [LIMIT, LIMIT, LIMIT], 'with the limit of workers');
  t.ok(
    logged.some((line) => line.includes('minWorkers 8, maxWorkers 8 is more than max_workers_per_model; 2 workers at most')),
    'the log says why',
  );
  await survived(t, server, { models: ['echo', 'many'] });
});

// Whether a prediction is taken, in process: a full queue, a job ticket, a queue deadline and a
// model without workers each answer 503 at once with TorchServe's message, and what was taken is
// still answered. The worker is a fake that holds its batch until released (fake-worker.ts), so
// "busy" is a state the test sets, not a sleep it hopes is long enough.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { HOLD } from './fake-worker.js';
import { errorOf, inProcessServer, storeArchive, type InProcessServer } from './in-process.js';

const predict = (server: InProcessServer, model: string, payload: string) => server.inference({ method: 'POST', url: `/predictions/${model}`, payload });

async function metric(server: InProcessServer, series: string, model: string): Promise<number> {
  const text = (await server.metrics({ method: 'GET', url: '/metrics' })).body;
  const line = text.split('\n').find((l) => l.startsWith(`${series}{`) && l.includes(`model_name="${model}",`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

async function pending(server: InProcessServer, model: string): Promise<number> {
  return (await server.management({ method: 'GET', url: `/models/${model}` })).json<Array<{ jobQueueStatus: { pendingRequests: number } }>>()[0]!.jobQueueStatus
    .pendingRequests;
}

/** Waits until `count` predictions of `model` have reached the server: at most 500 turns of 1 ms. */
async function arrived(server: InProcessServer, model: string, count: number): Promise<void> {
  for (let turn = 0; turn < 500; turn++) {
    if ((await metric(server, 'ts_inference_requests_total', model)) >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  throw new Error(`${count} requests for ${model} did not arrive`);
}

/** A server whose store holds echo.mar with `yaml` as its model-config.yaml, registered as `name`. */
async function withYaml(t: Test, name: string, yaml: string): Promise<InProcessServer> {
  const server = await inProcessServer(t, {
    prepare: (store) => {
      const file = join(store, '..', 'model-config.yaml');
      writeFileSync(file, yaml);
      storeArchive(store, 'echo', { configFile: file });
    },
  });
  const reg = await server.management({ method: 'POST', url: `/models?url=echo.mar&model_name=${name}&synchronous=true` });
  t.equal(reg.statusCode, 200, reg.body);
  return server;
}

t.test('queue full: 503 with Retry-After at once, while accepted requests are still answered', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'], properties: { job_queue_size: '2' } });
  t.equal((await server.management({ method: 'POST', url: '/models?url=echo.mar&model_name=busy&synchronous=true' })).statusCode, 200);
  const accepted = [predict(server, 'busy', HOLD), predict(server, 'busy', 'one'), predict(server, 'busy', 'two')];
  await arrived(server, 'busy', 3);
  t.equal(await pending(server, 'busy'), 2, 'one request in the worker, two waiting: the queue is full');
  const refused = await predict(server, 'busy', 'three');
  t.equal(refused.statusCode, 503);
  t.equal(refused.headers['retry-after'], '1');
  t.match(errorOf(refused), { code: 503, type: 'ServiceUnavailableException', message: /^Model "busy" has no worker to serve inference request/ });
  server.workers[0]!.release();
  t.same(
    (await Promise.all(accepted)).map((r) => r.statusCode),
    [200, 200, 200],
    'every accepted request is answered',
  );
  t.equal(await metric(server, 'ts_requests_rejected_total', 'busy'), 1);
  t.match((await server.metrics({ method: 'GET', url: '/metrics' })).body, /^ts_queue_size\{model_name="busy",model_version="1.0",hostname="[^"]+",\} 0\.0$/m);
});

t.test('useJobTicket: a request is accepted only when a worker is free to take it, nothing queues', async (t) => {
  const server = await withYaml(t, 'ticketed', 'minWorkers: 1\nmaxWorkers: 1\nuseJobTicket: true\n');
  t.match((await server.management({ method: 'GET', url: '/models/ticketed' })).json(), [{ useJobTicket: true }]);
  const busy = predict(server, 'ticketed', HOLD);
  await arrived(server, 'ticketed', 1);
  const refused = await predict(server, 'ticketed', 'no ticket');
  t.match(errorOf(refused), { code: 503, type: 'ServiceUnavailableException', message: /^Model "ticketed" has no worker to serve inference request/ });
  t.equal(await pending(server, 'ticketed'), 0, 'refused although the queue had room');
  server.workers[0]!.release();
  t.equal((await busy).statusCode, 200);
  t.equal((await predict(server, 'ticketed', 'free again')).statusCode, 200, 'accepted again once the worker is free');
});

t.test('clientTimeoutInMills: a request still queued at its deadline is answered 503 then, and never run', async (t) => {
  const server = await withYaml(t, 'impatient', 'minWorkers: 1\nmaxWorkers: 1\nclientTimeoutInMills: 100\n');
  t.match((await server.management({ method: 'GET', url: '/models/impatient' })).json(), [{ clientTimeoutInMills: 100 }]);
  const busy = predict(server, 'impatient', HOLD);
  await arrived(server, 'impatient', 1);
  const queued = await predict(server, 'impatient', 'waits too long');
  t.same(errorOf(queued), {
    code: 503,
    type: 'ServiceUnavailableException',
    message: 'Request waited longer than 100 ms for a worker of model "impatient" (clientTimeoutInMills, default_queue_timeout); it was not run',
  });
  t.equal(await pending(server, 'impatient'), 0, 'it left the queue');
  server.workers[0]!.release();
  t.equal((await busy).statusCode, 200, 'the request the worker held is answered, although older than the limit');
  t.equal(await metric(server, 'ts_batch_size_count', 'impatient'), 1, 'one batch ran: the expired request was not run');
  t.equal((await predict(server, 'impatient', 'in time')).statusCode, 200);

  // Alone in a forming batch (batch_size 2, max_batch_delay 1 s), it expires there too.
  const forming = await server.management({
    method: 'POST',
    url: '/models?url=echo.mar&model_name=forming&batch_size=2&max_batch_delay=1000&synchronous=true',
  });
  t.equal(forming.statusCode, 200, forming.body);
  t.equal((await predict(server, 'forming', 'alone')).statusCode, 503, 'answered at 100 ms from inside the batch being formed');
  t.equal(await metric(server, 'ts_batch_size_count', 'forming'), 0, 'the batch that held only the expired request was not run');
});

t.test('a model with no workers answers 503 at once', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  t.equal((await server.management({ method: 'POST', url: '/models?url=echo.mar&model_name=idle&initial_workers=0' })).statusCode, 200);
  const res = await predict(server, 'idle', 'x');
  t.match(errorOf(res), { code: 503, type: 'ServiceUnavailableException', message: /^Model "idle" has no worker to serve inference request/ });
  const versioned = await server.inference({ method: 'POST', url: '/predictions/idle/1.0', payload: 'x' });
  t.match(errorOf(versioned), { message: /^Model "idle" Version 1.0" has no worker/ });
  t.equal(await metric(server, 'ts_requests_rejected_total', 'idle'), 2, 'each counted as a refusal');
});

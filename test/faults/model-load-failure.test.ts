// A request waiting for its model's load, when the handler fails to load, is answered at once with
// the failure (500, as a registration whose workers fail to start), not at its queue deadline
// with a generic 503: the first request of a model with no worker (minWorkers 0), and the request
// that loads a model unloaded to make room. A model that served, and whose worker died and fails
// to load again as it restarts, has no worker to serve: TorchServe's 503. Every request sent is answered.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildBreakingMar, buildMar, errorBody, FIXTURES, startTestServer, tempDir, waitReady, type TestServer } from '../helpers.js';
import { survived } from './survival.js';

async function serveFailing(t: Test, properties: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => {
      const failing = join(store, '..', 'failing.ts');
      writeFileSync(failing, "export default class Failing { initialize(): void { throw new Error('no weights'); } handle(): never[] { return []; } }\n");
      buildMar(store, { modelName: 'failing', version: '1.0', handler: failing });
      buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
    },
    properties,
  });
}

async function call(url: string, method: string): Promise<number> {
  const res = await fetch(url, { method, signal: AbortSignal.timeout(60_000) });
  await res.arrayBuffer();
  return res.status;
}

/** A prediction of `model`: its status and, for an error, its message (and its type, for a 503). */
async function ask(server: TestServer, model: string, body = 'hello'): Promise<{ status: number; message: string; type?: string }> {
  const res = await fetch(`${server.urls.inference}/predictions/${model}`, { method: 'POST', body, signal: AbortSignal.timeout(60_000) });
  if (res.status === 200) {
    await res.arrayBuffer();
    return { status: 200, message: '' };
  }
  const error = await errorBody(res);
  return res.status === 503 ? { status: 503, type: error.type, message: error.message } : { status: res.status, message: error.message };
}

const FAILED = /^Failed to start workers for model failing version: 1\.0: The handler's initialize failed: no weights$/;

t.test('the first request of a model with no worker whose handler fails to load: 500 with the failure', async (t) => {
  const server = await serveFailing(t);
  t.equal(await call(`${server.urls.management}/models?url=failing.mar&initial_workers=0&synchronous=true`, 'POST'), 200, 'registered with no worker');
  t.equal(await call(`${server.urls.management}/models/failing?min_worker=0&max_worker=1&synchronous=true`, 'PUT'), 200, 'scaled to 0..1');
  const answer = await ask(server, 'failing');
  t.equal(answer.status, 500, '500, not the 503 of the queue deadline');
  t.match(answer.message, FAILED, 'the message carries the load failure');
  const again = await ask(server, 'failing');
  t.same([again.status, FAILED.test(again.message)], [500, true], 'the next request starts a worker anew, and is answered so too');
  await survived(t, server, { models: ['failing'], sent: 2, answered: 2 });
});

t.test('the request that loads an unloaded model whose handler fails to load: 500 with the failure', async (t) => {
  const server = await serveFailing(t, { max_loaded_models: '1' });
  t.equal(await call(`${server.urls.management}/models?url=echo.mar&initial_workers=1&synchronous=true`, 'POST'), 200, 'echo registered and loaded');
  t.equal(await call(`${server.urls.management}/models?url=failing.mar&initial_workers=1&synchronous=true`, 'POST'), 200, 'failing registered unloaded');
  const answer = await ask(server, 'failing');
  t.equal(answer.status, 500, '500, not the 503 of the queue deadline');
  t.match(answer.message, FAILED, 'the message carries the load failure');
  const again = await ask(server, 'failing');
  t.same([again.status, FAILED.test(again.message)], [500, true], 'the next request loads it anew, and is answered so too');
  t.equal((await ask(server, 'echo')).status, 200, 'echo, unloaded for it, loads again and answers');
  await survived(t, server, { models: ['echo', 'failing'], sent: 3, answered: 3 });
});

t.test('a worker that died and fails to load as it restarts: the requests waiting for it get 503, no worker to serve, and the restarts go on', async (t) => {
  const marker = join(tempDir(t), 'broken');
  const server = await startTestServer(t, { prepare: (store) => buildBreakingMar(store, marker) });
  t.equal(await call(`${server.urls.management}/models?url=breaking.mar&initial_workers=1&synchronous=true`, 'POST'), 200, 'registered and loaded');
  t.equal((await ask(server, 'breaking')).status, 200, 'it serves');
  t.same(await ask(server, 'breaking', 'break'), { status: 500, message: 'Worker died.' }, 'its worker dies');
  // Sent while the worker waits out its back-off, or loads again: answered when that load fails.
  t.same(
    await ask(server, 'breaking'),
    {
      status: 503,
      type: 'ServiceUnavailableException',
      message:
        'Model "breaking" has no worker to serve inference request. Please use scale workers API to add workers. ' +
        'If this is a sequence inference, please check if it is closed, or expired; or exceeds maxSequenceJobQueueSize',
    },
    "TorchServe's 503: the model has no worker to serve",
  );
  rmSync(marker);
  await waitReady(server.urls.management, 'breaking');
  t.equal((await ask(server, 'breaking')).status, 200, 'a later restart loads, and serves');
  await survived(t, server, { models: ['breaking'], sent: 4, answered: 4 });
});

// A request waiting for its model's load, when the handler fails to load, is answered at once with
// the failure (500, as a registration whose workers fail to start), not at its queue deadline
// with a generic 503: the first request of a model with no worker (minWorkers 0), and the request
// that loads a model unloaded to make room. Every request sent is answered.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, errorBody, FIXTURES, startTestServer, type TestServer } from '../helpers.js';
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

/** A prediction of `model`: its status and, for an error, its message. */
async function ask(server: TestServer, model: string): Promise<{ status: number; message: string }> {
  const res = await fetch(`${server.urls.inference}/predictions/${model}`, { method: 'POST', body: 'hello', signal: AbortSignal.timeout(60_000) });
  if (res.status === 200) {
    await res.arrayBuffer();
    return { status: 200, message: '' };
  }
  return { status: res.status, message: (await errorBody(res)).message };
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

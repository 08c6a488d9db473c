// Findings of an attacker's review, each a model store or a setting that once broke the server:
// one dangling link in the store failed the whole start, and a huge response_timeout overflowed
// Node's timer and failed every prediction.
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { predict, register, serve } from '../echo-model.js';
import { buildMar, FIXTURES, startTestServer } from '../helpers.js';
import { survived } from './survival.js';

t.test('a dangling link in the model store is skipped: load_models=all serves the good models', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
      symlinkSync('/nonexistent', join(store, 'dangling.mar'));
    },
    properties: { load_models: 'all' },
  });
  const res = await predict(server, 'echo', 'hello');
  t.equal(res.status, 200, 'the good model answers');
  await survived(t, server, { models: ['echo'], sent: 1, answered: 1 });
});

t.test('a response_timeout beyond what Node timers take means practically never', async (t) => {
  const server = await serve(t);
  await register(t, server, 'slowpoke', { initial_workers: 1, response_timeout: 3_000_000 });
  const res = await predict(server, 'slowpoke', 'hello');
  t.equal(res.status, 200, `the prediction answers: ${await res.text()}`);
  await survived(t, server, { models: ['slowpoke'], sent: 1, answered: 1 });
});

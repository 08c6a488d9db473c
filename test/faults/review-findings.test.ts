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

t.test('an url-encoded form of many fields is refused as a multipart body of many parts is', async (t) => {
  const server = await serve(t);
  await register(t, server, 'echo', { initial_workers: 1 });
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const many = await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', headers: form, body: 'a=1&'.repeat(200_000) });
  t.equal(many.status, 413, 'two hundred thousand fields: 413');
  t.match(await many.json(), { code: 413, type: 'RequestEntityTooLargeException', message: /more than 1000 parts or form fields/ });
  const parts = new FormData();
  for (let i = 0; i < 1001; i++) parts.append('a', '1');
  const multipart = await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: parts });
  t.equal(multipart.status, 413, 'a multipart body of 1001 parts: 413');
  t.match(await multipart.json(), { type: 'RequestEntityTooLargeException', message: /more than 1000 parts or form fields/ });
  const few = await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', headers: form, body: 'data=hello' });
  t.equal(few.status, 200, 'a form of one field still answers');
  await survived(t, server, { models: ['echo'], sent: 3, answered: 3 });
});

// A worker whose process cannot be started (its spawn fails: the program it runs under is not
// executable, as during a package upgrade; EACCES here, ENOENT, EAGAIN or EMFILE alike) is a worker
// that died at its start: logged with why, restarted with the crash back-off until it starts, and
// answered by a synchronous registration or scale with the spec's error; never a slot that waits
// for an exit that Node does not report, leaving the model a worker short for good.
//
// The fault is real: on Linux each worker runs under util-linux's setpriv, found on PATH at the
// first worker's start (workers/worker-host.ts). This file's PATH finds a stand-in first, which
// runs the worker as setpriv does (without the parent-death signal), and whose execute bit the
// tests take away and give back.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { describe, predict, register, serve } from '../echo-model.js';
import { errorBody, waitFor } from '../helpers.js';
import { survived } from './survival.js';

const bin = mkdtempSync(join(tmpdir(), 'tsserve-setpriv-'));
t.teardown(() => rmSync(bin, { recursive: true, force: true }));
const setpriv = join(bin, 'setpriv');
writeFileSync(setpriv, '#!/bin/sh\ncase "$1" in --help) echo "--pdeathsig"; exit 0;; esac\nwhile [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"\n');
const spawnable = (yes: boolean): void => chmodSync(setpriv, yes ? 0o755 : 0o644);
spawnable(true);
process.env.PATH = `${bin}:${process.env.PATH ?? ''}`;

async function readyWorkers(server: Parameters<typeof describe>[0], model: string): Promise<number> {
  return (await describe(server, model)).workers.filter((w) => w.status === 'READY').length;
}

t.test('a scale-up whose worker cannot be spawned: logged with why, retried with the back-off, and the model gets its worker', async (t) => {
  const log: string[] = [];
  const server = await serve(t, {}, undefined, (line) => log.push(line));
  await register(t, server, 'echo', { initial_workers: 1 });
  spawnable(false);
  t.teardown(() => spawnable(true));
  const scale = await fetch(`${server.urls.management}/models/echo?min_worker=2`, { method: 'PUT' });
  t.equal(scale.status, 202, 'the scale-up is accepted');
  await waitFor(() => log.some((l) => /could not start its process \(.*EACCES.*\); restarting in 1 s/.test(l)), 30_000, 'the failed spawn logged');
  await waitFor(() => log.filter((l) => /could not start its process/.test(l)).length >= 2, 30_000, 'a second try logged');
  const meanwhile = await predict(server, 'echo', 'hello');
  t.equal(meanwhile.status, 200, 'the worker that runs answers meanwhile');
  spawnable(true);
  // The back-off grows 1, 1, 2, 3, 5 s: the next try starts it.
  await waitFor(async () => (await readyWorkers(server, 'echo')) === 2, 60_000, 'two READY workers');
  t.same(
    (await describe(server, 'echo')).workers.map((w) => w.status),
    ['READY', 'READY'],
    'the model has both its workers',
  );
  const answers = await Promise.all([1, 2, 3, 4].map((i) => predict(server, 'echo', `after ${i}`)));
  t.same(
    answers.map((r) => r.status),
    [200, 200, 200, 200],
    'predictions are answered',
  );
  await survived(t, server, { models: ['echo'], sent: 5, answered: 1 + answers.length });
});

t.test("a synchronous scale or registration whose worker cannot be spawned: the spec's 500, at once", async (t) => {
  const server = await serve(t);
  await register(t, server, 'echo', { initial_workers: 1 });
  spawnable(false);
  t.teardown(() => spawnable(true));
  const scale = await fetch(`${server.urls.management}/models/echo?min_worker=2&synchronous=true`, { method: 'PUT', signal: AbortSignal.timeout(60_000) });
  t.equal(scale.status, 500, 'the synchronous scale fails');
  t.same(await errorBody(scale), { code: 500, type: 'InternalServerException', message: 'Failed to start workers for model echo version: null' });
  const registration = await fetch(`${server.urls.management}/models?url=echo.mar&model_name=other&initial_workers=1&synchronous=true`, {
    method: 'POST',
    signal: AbortSignal.timeout(60_000),
  });
  t.equal(registration.status, 500, 'the synchronous registration fails');
  t.same(await errorBody(registration), { code: 500, type: 'InternalServerException', message: 'Failed to start workers for model other version: 1.0' });
  t.equal((await fetch(`${server.urls.management}/models/other`)).status, 404, 'and is undone');
  spawnable(true);
  // The scale's worker is retried as a crashed one is, and comes.
  await waitFor(async () => (await readyWorkers(server, 'echo')) === 2, 60_000, 'two READY workers');
  t.equal((await predict(server, 'echo', 'hello')).status, 200, 'a prediction is answered');
  await survived(t, server, { models: ['echo'], sent: 1, answered: 1 });
});

t.test(
  'the only worker exits and cannot be spawned again: a prediction waiting for it is answered 503 "no worker" at the next failed try, not at its queue deadline (review-13 F5)',
  async (t) => {
    const log: string[] = [];
    const server = await serve(t, {}, undefined, (line) => log.push(line));
    await register(t, server, 'echo', { initial_workers: 1 });
    spawnable(false);
    t.teardown(() => spawnable(true));
    const exit = await predict(server, 'echo', 'exit');
    t.ok(exit.status >= 500, `the batch of the worker that exited: ${exit.status}`);
    await waitFor(() => log.some((l) => /could not start its process/.test(l)), 30_000, 'the failed spawn logged');
    const waiting = await predict(server, 'echo', 'hello');
    t.equal(waiting.status, 503, 'a 503');
    t.match(
      await errorBody(waiting),
      { code: 503, type: 'ServiceUnavailableException', message: /has no worker to serve inference request/ },
      'no worker, not a queue deadline',
    );
    spawnable(true);
    await waitFor(async () => (await readyWorkers(server, 'echo')) === 1, 60_000, 'the worker back');
    t.equal((await predict(server, 'echo', 'after')).status, 200, 'and answering');
    await survived(t, server, { models: ['echo'], sent: 3, answered: 3 });
  },
);

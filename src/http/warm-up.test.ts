// The front end's warm-up's tickets (http/warm-up.ts), with a listener that answers nothing while
// the warm-up runs: its request is first asked about after the warm-up gave up on it, as a loaded
// server reads a new connection's request (0.9 s late on 2026-12-07, past the warm-up's timeout).
// Before tickets, a key recognised only while the warm-up ran made such a request a client's:
// counted, logged, and load that added a worker (test/autoscale.test.ts).
import { createServer, type IncomingMessage, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { isWarmUp, WARM_UP_HEADER, warmFrontEnd } from './warm-up.js';

/** A listener on 127.0.0.1 that `listener` answers, closed with the test; its URL. */
async function loopbackServer(t: Test, listener: RequestListener): Promise<string> {
  const server = createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

t.test('a request the warm-up gave up on is its own whenever the server reads it; its ticket is good once, and a made-up one never', async (t) => {
  const seen: IncomingMessage[] = [];
  let warming = true;
  const url = await loopbackServer(t, (req, res) => {
    seen.push(req);
    req.resume();
    if (!warming) res.end('ok');
  });

  const result = await warmFrontEnd(url, [{ model: 'm', body: Buffer.from('x'), batchDelayMs: 0 }], 200, undefined);
  warming = false;
  t.same(
    result,
    { answered: 0, slow: ['m'] },
    "its one prediction unanswered: given up on at its timeout, the model slow (not refused: a loaded machine's first answer of a 150 ms model took over its 1 s)",
  );
  // A loaded server may read it later still: its read is waited for, not assumed.
  for (let turns = 0; seen.length === 0 && turns < 1000; turns++) await new Promise((resolve) => setTimeout(resolve, 10));
  const [late] = seen;
  t.equal(seen.length, 1, 'the server read the request');
  t.ok(isWarmUp(late!), "asked first after the warm-up has ended: the warm-up's own");
  t.ok(isWarmUp(late!), 'and again, as each stage of a request asks');

  const ticket = String(late!.headers[WARM_UP_HEADER]);
  for (const [what, headers] of [
    ['its ticket again', { [WARM_UP_HEADER]: ticket }],
    ['a made-up ticket', { [WARM_UP_HEADER]: 'guess' }],
    ['no ticket', {}],
  ] as const) {
    await (await fetch(`${url}/predictions/m`, { method: 'POST', headers, body: 'x' })).text();
    t.notOk(isWarmUp(seen.at(-1)!), `a request with ${what} is a client's`);
  }
});

t.test("the warm-up ends with its budget: a prediction it sends late is given up on at the budget's end, not a whole budget later (review-14)", async (t) => {
  // Each answer takes 950 ms of the 1000 ms budget: the second, sent at 950 ms, had 1000 ms more.
  const url = await loopbackServer(t, (req, res) => {
    req.resume();
    setTimeout(() => res.end('ok'), 950);
  });
  const result = await warmFrontEnd(url, [{ model: 'm', body: Buffer.from('x'), batchDelayMs: 0 }], 1000, undefined);
  t.ok(result.answered <= 1, `at most the first answered within the budget (${result.answered})`);
  t.same(result.slow, ['m'], 'the model slow');
});

// A handler's output is bounded where it is read, never only after it arrived whole: an answer
// over max_response_size is refused by the worker before it is sent (a clear 500), a streamed
// answer is bounded chunk by chunk and in total, a worker that sends a message larger than any
// answer may be (a handler calling process.send itself) is killed while the front end reads its
// first bytes, and a handler's stdout is read in lines cut at 64 KiB, a stream without newlines
// included. The front end's memory stays bounded throughout; the model keeps serving.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { buildMar, FIXTURES, startTestServer, waitFor, waitReady } from '../helpers.js';
import { frontEndMemory } from './memory.js';
import { survived } from './survival.js';

const MAX = 1024 * 1024;
const MB = 1024 * 1024;
const TOO_LARGE = { code: 500, type: 'InternalServerException', message: `Response is larger than max_response_size (${MAX} bytes).` };

t.test("outputs far over their bounds: refused or cut where they are read, the front end's memory bounded", async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'out', version: '1.0', handler: join(FIXTURES, 'output_handler.ts') }),
    properties: { load_models: 'out.mar', max_response_size: String(MAX) },
  });
  await waitReady(server.urls.management, 'out');
  let sent = 0;
  let answered = 0;
  const ask = async (command: string): Promise<Response> => {
    sent++;
    const res = await fetch(`${server.urls.inference}/predictions/out`, { method: 'POST', body: command, signal: AbortSignal.timeout(60_000) });
    answered++;
    return res;
  };
  t.equal(await (await ask(`big:${MAX}`)).text(), 'x'.repeat(MAX), 'an answer of max_response_size bytes is served');
  const memory = frontEndMemory();

  const big = await ask(`big:${200 * MB}`);
  t.equal(big.status, 500, 'an answer of 200 MB: 500');
  t.same(await bodyOf(big), TOO_LARGE, 'naming the limit');

  const chunk = await ask(`stream:1:${2 * MAX}`);
  t.equal(chunk.status, 500, 'a streamed part over the limit: 500 before anything is sent');
  t.same(await bodyOf(chunk), TOO_LARGE);
  const parts = await ask(`stream:5:${Math.ceil(0.6 * MAX)}`);
  t.equal(parts.status, 200, 'parts each under the limit start the stream');
  const streamed = await parts.text();
  t.ok(streamed.endsWith(`${JSON.stringify(TOO_LARGE, null, 2)}\n`), 'and it ends with the error once their total passes it');
  t.ok(streamed.length < 2 * MAX, `the parts past the limit were not sent (${streamed.length} bytes)`);

  t.equal(await (await ask(`line:${100 * MB}`)).text(), 'printed', 'a 100 MB line on stdout: the request is served');
  t.equal(await (await ask(`no-newline:${90 * MB}`)).text(), 'written', '90 MB on stdout without a newline: served');

  const hostile = await ask(`send:${300 * MB}`);
  t.equal(hostile.status, 500, 'a handler that sends 300 MB through process.send: its request fails');
  t.same(await bodyOf(hostile), TOO_LARGE);
  await waitReady(server.urls.management, 'out');
  t.equal(await (await ask('after')).text(), 'ok', 'the replacement worker serves');

  memory.check(t);
  // The line is logged when its newline comes; the output without one when the stream ends, as
  // the killed worker's did.
  const log = join(server.dir, 'logs', 'model_log.log');
  const cuts = [`x [... ${100 * MB - 64 * 1024} bytes cut]`, `x [... ${90 * MB - 64 * 1024} bytes cut]`];
  await waitFor(() => cuts.every((cut) => readFileSync(log, 'utf8').includes(cut)), 10_000, 'both cut lines in model_log.log');
  t.pass('both outputs are logged, each cut at 64 KiB with the count of bytes cut');
  t.ok(
    readFileSync(log, 'utf8')
      .split('\n')
      .every((l) => l.length < 65 * 1024),
    'no line of model_log.log is longer than the cut',
  );
  await survived(t, server, { models: ['out'], sent, answered });
});

/** The answer's JSON, or its text when it is not JSON (an answer that should have been an error). */
async function bodyOf(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text.slice(0, 100);
  }
}

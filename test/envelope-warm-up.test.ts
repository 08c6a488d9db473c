// A model's warmupFile under a service envelope: KServe's runtime serves with kservev2, whose
// requests are v2 JSON, and the sample is a raw file (`curl -T`'s body). Sent through the envelope,
// every warm-up request was the envelope's 400 and the handler never ran: "400 batches" logged,
// nothing warmed, the first requests after a start paying for it. The sample goes to the handler.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { buildWarmEcho } from './echo-model.js';
import { startTestServer, waitFor } from './helpers.js';

t.test('under service_envelope=kservev2 the warmupFile runs through the handler itself, and the front end sends it as a v2 request', async (t) => {
  const lines: string[] = [];
  const server = await startTestServer(t, {
    // 1000 ms: each warm-up prediction's timeout is the budget, and at load 27 a first answer took
    // over 300 ms (none answered, 2026-12-07).
    properties: { service_envelope: 'kservev2', load_models: 'warm.mar', front_end_warmup_ms: '1000' },
    serverLog: (line) => lines.push(line),
    level: 'info',
    prepare: (store) => buildWarmEcho(store),
  });
  const modelLog = join(server.dir, 'logs', 'model_log.log');
  const read = (): string => (existsSync(modelLog) ? readFileSync(modelLog, 'utf8') : '');
  await waitFor(() => read().includes('Warm-up of model warm'), 10_000, 'the warm-up line');
  const batches = Number(/Warm-up of model warm with sample.txt: (\d+) batches/.exec(read())?.[1]);
  t.ok(batches > 0, `${batches} batches`);
  t.equal(read().split('echo handler was asked to print').length - 1, batches, 'each through the handler');
  await server.startupModelsStarted;
  const frontEnd = Number(/Front end warmed up: (\d+) predictions of warm/.exec(lines.join('\n'))?.[1]);
  t.ok(frontEnd > 0, `the front end's warm-up answered: ${frontEnd} predictions (review-9 F3: none, each the envelope's 400)`);
  const v2 = { inputs: [{ name: 'x', shape: [1], datatype: 'BYTES', data: ['hello'] }] };
  const res = await fetch(`${server.urls.inference}/v2/models/warm/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(v2),
  });
  t.equal(res.status, 200, 'and the model serves v2 requests');
});

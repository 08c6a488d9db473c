// The access log gathers its lines in memory and writes them in pieces (log/loggers.ts): a flood
// of refusals, then `tsserve --stop` at once, and every refusal's line is in access_log.log,
// also the last ones, still gathered when the stop came.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { buildMar, FIXTURES, tempDir, tsserve, waitReady, writeUserConfig } from './helpers.js';

const CLIENTS = 20;
const EACH = 100;

t.test("a flood of refusals, then `tsserve --stop`: every refusal's line is in access_log.log", async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
  const urls = await writeUserConfig(dir);
  const env = { TMPDIR: dir };
  const started = tsserve(['--start', '--ncs', '--model-store', 'model-store', '--models', 'echo=echo.mar', '--disable-token-auth'], dir, env);
  t.teardown(() => tsserve(['--stop'], dir, env));
  t.equal(started.status, 0, `started: ${started.out}`);
  await waitReady(urls.management, 'echo');
  // No worker: every prediction is refused before the router (http/raw-refusal.ts).
  const scaled = await fetch(`${urls.management}/models/echo?min_worker=0&max_worker=0&synchronous=true`, { method: 'PUT' });
  t.equal(scaled.status, 200, 'scaled to no workers');

  const statuses = await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      const seen: number[] = [];
      for (let i = 0; i < EACH; i++) {
        const res = await fetch(`${urls.inference}/predictions/echo`, { method: 'POST', body: 'x', signal: AbortSignal.timeout(30_000) });
        await res.arrayBuffer();
        seen.push(res.status);
      }
      return seen;
    }),
  );
  t.same(new Set(statuses.flat()), new Set([503]), `all ${CLIENTS * EACH} refused`);
  const stopped = tsserve(['--stop'], dir, env);
  t.equal(stopped.status, 0, `stopped: ${stopped.out}`);

  const lines = readFileSync(join(dir, 'logs', 'access_log.log'), 'utf8')
    .split('\n')
    .filter((l) => /^\S+ - \/127\.0\.0\.1:\d+ "POST \/predictions\/echo HTTP\/1\.1" 503 \d+$/.test(l));
  t.equal(lines.length, CLIENTS * EACH, 'a line for each refusal, the last ones too');
});

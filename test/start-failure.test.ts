// A start that fails halfway leaves nothing running: here the inference port is taken after the
// start-up model's worker has been launched, and no worker process may outlive the failed start.
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import t from 'tap';
import { buildMnistMar, startTestServer, waitFor } from './helpers.js';

/** Worker processes whose parent is this test process. */
function ourWorkers(): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .flatMap((pid) => {
      try {
        const ppid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return ppid === process.pid && cmd.includes('worker/entry.js') ? [Number(pid)] : [];
      } catch {
        return [];
      }
    });
}

t.test('inference port in use: start-up fails with EADDRINUSE and stops the workers it launched', async (t) => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = (taken.address() as { port: number }).port;

  await t.rejects(
    startTestServer(t, {
      prepare: (store) => buildMnistMar(store),
      properties: { inference_address: `http://127.0.0.1:${port}`, load_models: 'mnist.mar' },
    }),
    { code: 'EADDRINUSE' },
  );
  await waitFor(() => ourWorkers().length === 0, 10_000, 'no worker left');
  t.same(ourWorkers(), [], 'no worker process outlives the failed start');
});

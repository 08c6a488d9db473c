// A start that fails leaves nothing running. A port in use is found before any model loads and
// said plainly; a start that fails halfway (here its HTTPS key cannot be read, after the start-up
// model's worker has been launched) leaves no worker process behind.
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

t.test('inference port in use: refused before any model loads, naming the key and the address', async (t) => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = (taken.address() as { port: number }).port;
  const log: string[] = [];

  await t.rejects(
    startTestServer(t, {
      prepare: (store) => buildMnistMar(store),
      properties: { inference_address: `http://127.0.0.1:${port}`, load_models: 'mnist.mar' },
      serverLog: (line) => log.push(line),
      level: 'info',
    }),
    {
      message: new RegExp(
        `^inference_address http://127\\.0\\.0\\.1:${port} cannot be opened: the port is in use\\. Choose another with inference_address in .*config\\.properties\\.$`,
      ),
    },
  );
  t.same(
    log.filter((line) => /W-9000|State change|Failed to (load|start)/.test(line)),
    [],
    'no model was loaded, no worker started or stopped',
  );
  t.same(ourWorkers(), [], 'no worker process');
});

t.test('a start that fails halfway (its HTTPS key unreadable) stops the workers it launched', async (t) => {
  await t.rejects(
    startTestServer(t, {
      prepare: (store) => buildMnistMar(store),
      properties: {
        inference_address: 'https://127.0.0.1:0',
        private_key_file: '/nonexistent/key.pem',
        certificate_file: '/nonexistent/cert.pem',
        load_models: 'mnist.mar',
      },
    }),
    { message: /Cannot read private_key_file \/nonexistent\/key\.pem/ },
  );
  await waitFor(() => ourWorkers().length === 0, 10_000, 'no worker left');
  t.same(ourWorkers(), [], 'no worker process outlives the failed start');
});

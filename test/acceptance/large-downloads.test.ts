// A file server that closes the connection after the body (Python's http.server, HTTP/1.0) serves
// a 200 MB archive for ten registrations in a row, the event loop kept busy: Node's bundled fetch
// asserted and ended the process within one to eight of them (4 runs of 5). A soak of 2 GB, so
// it runs in the acceptance tier (`npm run test:acceptance`, CI), not in `npm test`; the fault
// tier's rude file servers (test/faults/remote-archives.test.ts) run there.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, FIXTURES, startTestServer } from '../helpers.js';
import { survived } from '../faults/survival.js';

const ALLOWED = 'http://127.0.0.1:[0-9]+/.*';

/** `bytes` of random bytes in `path`, written a MiB at a time. */
function randomFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(1024 ** 2);
  for (let written = 0; written < bytes; written += block.length) writeSync(fd, randomFillSync(block), 0, Math.min(block.length, bytes - written));
  closeSync(fd);
}

/** Runs `cleanup` at teardown, or at exit when an uncaught error (the old fetch's assertion) ends the test process without one. */
function cleanUp(t: Test, cleanup: () => void): void {
  process.once('exit', cleanup);
  t.teardown(() => {
    process.off('exit', cleanup);
    cleanup();
  });
}

/** Python's own file server (HTTP/1.0: it closes the connection after each body) over `dir`; its base URL. */
async function pythonFileServer(t: Test, dir: string): Promise<{ base: string; child: ChildProcess }> {
  const child = spawn('python3', ['-u', '-m', 'http.server', '--bind', '127.0.0.1', '0', '--directory', dir], { stdio: ['ignore', 'pipe', 'ignore'] });
  cleanUp(t, () => child.kill());
  const port = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const found = /port (\d+)/.exec(out);
      if (found) resolve(found[1]!);
    });
    child.once('exit', (code) => reject(new Error(`python3 -m http.server exited (${code}): ${out}`)));
  });
  return { base: `http://127.0.0.1:${port}`, child };
}

t.test('a file server that closes after the body serves ten registrations of a 200 MB .mar in a row', async (t) => {
  const source = mkdtempSync(join(tmpdir(), 'tsserve-test-'));
  cleanUp(t, () => rmSync(source, { recursive: true, force: true }));
  const padding = join(source, 'padding.bin');
  let started = performance.now();
  randomFile(padding, 200 * 1024 ** 2);
  buildMar(source, { modelName: 'big', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts'), extraFiles: padding, archiveFormat: 'zip-store' });
  t.comment(`the 200 MB .mar was built in ${Math.round(performance.now() - started)} ms`);
  const files = await pythonFileServer(t, source);
  const server = await startTestServer(t, { properties: { allowed_urls: ALLOWED } });
  const url = `${files.base}/big.mar`;
  // The event loop busy 5 ms in every 20, as a server doing other work: the body then waits to be
  // written while the file server's last bytes and its close arrive, which is when Node's bundled
  // fetch (undici before nodejs/undici#5474) asserts and ends the process.
  const busy = setInterval(() => {
    const until = performance.now() + 5;
    while (performance.now() < until);
  }, 20);
  t.teardown(() => clearInterval(busy));
  started = performance.now();
  for (let i = 1; i <= 10; i++) {
    const res = await fetch(`${server.urls.management}/models?url=${url}&initial_workers=0`, { method: 'POST' });
    t.equal(res.status, 200, `registration ${i}: ${await res.text()}`);
    t.same(readdirSync(server.store), ['big.mar'], `registration ${i}: the download, and nothing else, is in the store`);
    t.equal((await fetch(`${server.urls.management}/models/big`, { method: 'DELETE' })).status, 200, `unregistration ${i}`);
    t.same(readdirSync(server.store), [], `unregistration ${i}: the download is removed`);
  }
  t.comment(`ten registrations and unregistrations took ${Math.round(performance.now() - started)} ms`);
  clearInterval(busy);
  t.equal(files.child.exitCode, null, 'the file server is up');
  await survived(t, server);
});

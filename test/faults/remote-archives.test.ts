// Registering from a URL: nothing a file server does ends the process. A server that closes the
// connection after the body (Python's http.server, HTTP/1.0) serves a 200 MB archive ten times in
// a row; a rude one (reset mid-body, stall after the headers, a body longer or shorter than its
// Content-Length, a redirect loop, a 500) gets a clean 400 each time, with nothing left in the store.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, errorBody, FIXTURES, startTestServer, tempDir } from '../helpers.js';
import { survived } from './survival.js';

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

/** What the rude file server does for each path; `mar` is a real archive it can serve. */
function rudeAnswer(socket: Socket, path: string, mar: Buffer): void {
  const head = (status: string, headers: string[] = []): string => `HTTP/1.1 ${status}\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`;
  const bytes = (n: number): Buffer => Buffer.alloc(n, 'x');
  switch (path) {
    case '/reset.mar':
      socket.write(head('200 OK', ['Content-Length: 1000000']));
      socket.write(bytes(100_000), () => socket.resetAndDestroy());
      return;
    case '/stall.mar':
      socket.write(head('200 OK', ['Content-Length: 1000']));
      return;
    case '/silent.mar':
      return;
    case '/short.mar':
      socket.end(Buffer.concat([Buffer.from(head('200 OK', ['Content-Length: 100000', 'Connection: close'])), bytes(50_000)]));
      return;
    case '/long.mar':
      socket.end(Buffer.concat([Buffer.from(head('200 OK', [`Content-Length: ${mar.length}`])), mar, bytes(5000)]));
      return;
    case '/endless.mar': {
      socket.write('HTTP/1.0 200 OK\r\n\r\n');
      const more = (): void => {
        while (socket.writable && socket.write(bytes(64 * 1024)));
      };
      socket.on('drain', more);
      more();
      return;
    }
    case '/loop.mar':
      socket.end(head('302 Found', ['Location: /loop.mar', 'Content-Length: 0']));
      return;
    case '/elsewhere.mar':
      socket.end(head('301 Moved Permanently', ['Location: file:///etc/passwd', 'Content-Length: 0']));
      return;
    case '/error.mar':
      socket.end(`${head('500 Internal Server Error', ['Content-Length: 5'])}oops!`);
      return;
    case '/garbage.mar':
      socket.end('this is not HTTP\r\n\r\n');
      return;
    case '/moved.mar':
      socket.end(head('307 Temporary Redirect', ['Location: /echo.mar', 'Content-Length: 0']));
      return;
    case '/echo.mar':
      socket.end(Buffer.concat([Buffer.from(head('200 OK', [`Content-Length: ${mar.length}`, 'Connection: close'])), mar]));
      return;
    default:
      socket.end(head('404 Not Found', ['Content-Length: 0']));
  }
}

/** A file server on 127.0.0.1 that misbehaves as rudeAnswer says; its base URL. */
async function rudeFileServer(t: Test, mar: Buffer): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let request = '';
    let answered = false;
    socket.on('data', (chunk: Buffer) => {
      request += chunk.toString('latin1');
      if (answered || !request.includes('\r\n\r\n')) return;
      answered = true;
      rudeAnswer(socket, request.split(' ')[1] ?? '/', mar);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

t.test(
  'a rude file server: a reset mid-body, a stall, a wrong Content-Length, a redirect loop, a 500: each a clean 400, nothing left in the store',
  async (t) => {
    const source = tempDir(t);
    const mar = readFileSync(buildMar(source, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }));
    const base = await rudeFileServer(t, mar);
    const log: string[] = [];
    const server = await startTestServer(t, {
      properties: { allowed_urls: ALLOWED, download_timeout: '1', max_download_size: String(5 * 1024 ** 2) },
      serverLog: (line) => log.push(line),
    });
    const rude = ['reset', 'stall', 'silent', 'short', 'long', 'endless', 'loop', 'elsewhere', 'error', 'garbage'];
    let answered = 0;
    for (const name of rude) {
      const url = `${base}/${name}.mar`;
      const res = await fetch(`${server.urls.management}/models?url=${url}&initial_workers=0`, { method: 'POST', signal: AbortSignal.timeout(30_000) });
      answered++;
      t.same(await errorBody(res), { code: 400, type: 'DownloadArchiveException', message: `Failed to download archive from: ${url}` }, name);
      t.same(readdirSync(server.store), [], `${name}: nothing left in the store`);
    }
    const reasons = { loop: 'more than 5 redirects', elsewhere: 'redirected to file:///etc/passwd', error: 'status 500', endless: 'over max_download_size' };
    for (const [name, reason] of Object.entries(reasons)) {
      const said = log.some((l) => l.includes(`Failed to download archive from: ${base}/${name}.mar: `) && l.includes(reason));
      t.ok(said, `the log says why ${name}.mar failed: ${reason}`);
    }
    const moved = await fetch(`${server.urls.management}/models?url=${base}/moved.mar&initial_workers=0`, { method: 'POST' });
    t.equal(moved.status, 200, `a redirect to an allowed URL is followed: ${await moved.text()}`);
    t.same(readdirSync(server.store), ['moved.mar'], 'saved under the name the client gave');
    const patient = await startTestServer(t, { properties: { allowed_urls: ALLOWED, download_timeout: '2147483647' } });
    const slow = await fetch(`${patient.urls.management}/models?url=${base}/echo.mar&initial_workers=0`, { method: 'POST' });
    t.equal(slow.status, 200, 'a download_timeout longer than a Node timer can wait still lets a download finish');
    await survived(t, server, { models: ['echo'], sent: rude.length, answered });
  },
);

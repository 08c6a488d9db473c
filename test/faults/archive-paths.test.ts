// Where a registered archive may come from: a plain path names an archive inside the model store,
// a file URL must match allowed_urls once decoded and resolved, and only regular files and
// directories are read. Refusals read the same for a file that exists and one that does not, and
// whatever a registration records is found again in the store by the next start.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, FIXTURES, startTestServer, tempDir, type TestServer } from '../helpers.js';
import { survived } from './survival.js';

/** echo.mar (the echo handler's archive) built in a folder of its own; its path. */
function echoMar(t: Test): string {
  return buildMar(tempDir(t), { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
}

/** Counts what was sent and answered, for survived(). */
class Client {
  sent = 0;
  answered = 0;
  private readonly server: TestServer;
  constructor(server: TestServer) {
    this.server = server;
  }

  /** POST /models with `url` (sent as given: percent signs and backslashes included) and zero workers. */
  async register(url: string, name = 'echo'): Promise<{ status: number; body: Record<string, unknown> }> {
    this.sent++;
    const query = `url=${encodeURIComponent(url)}&model_name=${name}&initial_workers=0`;
    const res = await fetch(`${this.server.urls.management}/models?${query}`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
    this.answered++;
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }
}

const notFound = (url: string) => ({ status: 404, body: { code: 404, type: 'ModelNotFoundException', message: `Model not found at: ${url}` } });
const notAllowed = (url: string) => ({
  status: 404,
  body: { code: 404, type: 'ModelNotFoundException', message: `Given URL ${url} does not match any allowed URL(s)` },
});

t.test('a plain path outside the store, /dev/zero, /etc/passwd and a missing file: the one answer a missing archive gets', async (t) => {
  const outside = echoMar(t);
  const server = await startTestServer(t);
  const client = new Client(server);
  for (const url of [outside, '/dev/zero', '/etc/passwd', '/etc/no-such-file', 'no-such.mar']) {
    t.same(await client.register(url), notFound(url), url);
  }
  t.same(server.registry.all(), [], 'nothing registered');
  await survived(t, server, { sent: client.sent, answered: client.answered });
});

t.test('a file URL is matched against allowed_urls after decoding: %2e%2e and backslashes do not leave the store', async (t) => {
  const server = await startTestServer(t);
  // <tmp>/<test dir>/model-store/%2e%2e\%2e%2e\<test dir>\x\evil.mar is <tmp>/<test dir>/x/evil.mar.
  mkdirSync(join(server.dir, 'x'));
  copyFileSync(echoMar(t), join(server.dir, 'x', 'evil.mar'));
  const client = new Client(server);
  const traversal = `file://${server.store}/%2e%2e\\%2e%2e\\${basename(server.dir)}\\x\\evil.mar`;
  t.same(await client.register(traversal), notAllowed(traversal), 'encoded dot segments with backslashes');
  const slashes = `file://${server.store}/%2e%2e/x/evil.mar`;
  t.same(await client.register(slashes), notAllowed(slashes), 'encoded dot segments with slashes');
  for (const url of ['file:///etc/passwd', 'file:///etc/no-such-file', 'file:///dev/zero']) t.same(await client.register(url), notAllowed(url), url);
  t.same(server.registry.all(), [], 'nothing registered');
  await survived(t, server, { sent: client.sent, answered: client.answered });
});

t.test('the default allowed_urls (the model store) is matched case-sensitively: a folder that differs only in case is outside', async (t) => {
  const server = await startTestServer(t);
  // <test dir>/MODEL-STORE beside <test dir>/model-store: another folder on Linux.
  mkdirSync(join(server.dir, 'MODEL-STORE'));
  copyFileSync(echoMar(t), join(server.dir, 'MODEL-STORE', 'evil.mar'));
  const client = new Client(server);
  const url = `file://${join(server.dir, 'MODEL-STORE', 'evil.mar')}`;
  t.same(await client.register(url), notAllowed(url), url);
  t.same(server.registry.all(), [], 'nothing registered');
  await survived(t, server, { sent: client.sent, answered: client.answered });
});

t.test('a fifo, a device and symlinks out of the store are not read; each answer is the one a missing archive gets', async (t) => {
  const outside = echoMar(t);
  const server = await startTestServer(t, {
    prepare: (store) => {
      execFileSync('mkfifo', [join(store, 'pipe.mar')]);
      symlinkSync(outside, join(store, 'link.mar'));
      symlinkSync('/etc/passwd', join(store, 'passwd.mar'));
      symlinkSync('/etc/no-such-file', join(store, 'dangling.mar'));
      symlinkSync('/dev/zero', join(store, 'zero.mar'));
    },
  });
  const client = new Client(server);
  for (const name of ['pipe.mar', 'link.mar', 'passwd.mar', 'dangling.mar', 'zero.mar']) {
    t.same(await client.register(name), notFound(name), name);
    const url = `file://${join(server.store, name)}`;
    t.same(await client.register(url), notFound(url), url);
  }
  t.same(server.registry.all(), [], 'nothing registered');
  await survived(t, server, { sent: client.sent, answered: client.answered });
});

t.test('allowed_urls that allow all of /dev and /etc still read only regular files, and a missing one answers as a device does', async (t) => {
  const server = await startTestServer(t, { properties: { allowed_urls: 'file:///dev/.*,file:///etc/.*' } });
  const client = new Client(server);
  for (const url of ['file:///dev/zero', 'file:///dev/null', 'file:///etc/no-such-file', 'file:///dev/shm']) {
    t.same(await client.register(url), notFound(url), url);
  }
  const passwd = await client.register('file:///etc/passwd');
  t.match(passwd, { status: 400, body: { type: 'InvalidModelException' } }, 'a regular file allowed_urls allows is copied in and opened: not an archive');
  t.same(readdirSync(server.store), [], 'and its copy is removed');
  await survived(t, server, { sent: client.sent, answered: client.answered });
});

t.test('what TorchServe users do still works, and each registration records an archive the next start finds in the store', async (t) => {
  const elsewhere = join(tempDir(t), 'remote.mar');
  copyFileSync(echoMar(t), elsewhere);
  const server = await startTestServer(t, {
    properties: { allowed_urls: `file://${tmpdir()}/.*` },
    prepare: (store) => {
      copyFileSync(elsewhere, join(store, 'echo.mar'));
      mkdirSync(join(store, 'sub'));
      copyFileSync(elsewhere, join(store, 'sub', 'nested.mar'));
      buildMar(store, { modelName: 'unpacked', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts'), archiveFormat: 'no-archive' });
      symlinkSync('echo.mar', join(store, 'alias.mar'));
    },
  });
  const client = new Client(server);
  const accepted = [
    { url: 'echo.mar', name: 'plain', recorded: 'echo.mar' },
    { url: 'sub/nested.mar', name: 'nested', recorded: 'sub/nested.mar' },
    { url: 'unpacked', name: 'directory', recorded: 'unpacked' },
    { url: 'alias.mar', name: 'alias', recorded: 'echo.mar' },
    { url: join(server.store, 'echo.mar'), name: 'absolute', recorded: 'echo.mar' },
    { url: `file://${join(server.store, 'echo.mar')}`, name: 'file_in_store', recorded: 'echo.mar' },
    { url: `file://${elsewhere}`, name: 'file_elsewhere', recorded: 'remote.mar' },
  ];
  for (const a of accepted) {
    const res = await client.register(a.url, a.name);
    t.equal(res.status, 200, `${a.url}: ${JSON.stringify(res.body)}`);
    const recorded = server.registry.all().find((m) => m.name === a.name)?.spec.marName;
    t.equal(recorded, a.recorded, `${a.url} is recorded as ${a.recorded}`);
    t.ok(existsSync(join(server.store, a.recorded)), `${a.recorded} is in the store`);
  }
  const again = await client.register('sub/nested.mar', 'nested_again');
  t.equal(again.status, 200, 'a recorded path registers again, as a restart does');
  t.equal((await fetch(`${server.urls.management}/models/file_elsewhere`, { method: 'DELETE' })).status, 200);
  t.notOk(existsSync(join(server.store, 'remote.mar')), 'the copy of a file from outside the store is removed on unregister, as a download is');
  t.ok(existsSync(elsewhere), 'and the file it was copied from is not');
  await survived(t, server, {
    models: [...accepted.map((a) => a.name).filter((n) => n !== 'file_elsewhere'), 'nested_again'],
    sent: client.sent,
    answered: client.answered,
  });
});

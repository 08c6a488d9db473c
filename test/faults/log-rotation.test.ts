// The log files roll as TorchServe's log4j2.xml rolls them: past a size (log_rolling_size_mb) to
// <name>.<dd-MMM>.log.gz, keeping log_rolling_max_files of them, for the files the server writes
// itself and for ts_log.log of a server started with `tsserve --start`.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import t from 'tap';
import { buildMar, FIXTURES, ROOT, startedPid, tempDir, waitFor, waitReady, writeUserConfig } from '../helpers.js';
import { childServer } from './disk.js';
import { survived } from './survival.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');

t.test('tsserve --start rolls ts_log.log, access_log.log and model_log.log at log_rolling_size_mb, keeping log_rolling_max_files', async (t) => {
  const dir = tempDir(t);
  const tsserve = (...args: string[]) =>
    spawnSync(process.execPath, [TSSERVE, ...args], { cwd: dir, env: { ...process.env, TMPDIR: dir }, encoding: 'utf8', timeout: 60_000 });
  t.teardown(() => tsserve('--stop'));
  const store = join(dir, 'model-store');
  mkdirSync(store);
  buildMar(store, { modelName: 'chatty', version: '1.0', handler: join(FIXTURES, 'chatty_handler.ts') });
  const limit = 64 * 1024;
  const urls = await writeUserConfig(dir, ['default_workers_per_model=1', `log_rolling_size_mb=${limit / 1024 / 1024}`, 'log_rolling_max_files=2']);
  const started = tsserve('--start', '--ncs', '--model-store', 'model-store', '--models', 'chatty=chatty.mar', '--disable-token-auth');
  t.equal(started.status, 0, started.stdout + started.stderr);
  await waitReady(urls.management, 'chatty');

  // About 400 KB into each file: six rolls or more of each, in lines of 8 KB (a roll holds seven).
  let sent = 0;
  let answered = 0;
  for (const body of ['print:8000', 'eprint:8000']) {
    for (let i = 0; i < 50; i++) {
      sent++;
      const res = await fetch(`${urls.inference}/predictions/chatty`, { method: 'POST', body });
      if ((await res.text()) === 'ok') answered++;
    }
  }
  // access_log.log's lines carry the URL: a long query makes each ~500 bytes, so 800 pings write
  // what 4,000 bare ones did.
  const padded = `${urls.inference}/ping?pad=${'p'.repeat(400)}`;
  t.equal((await fetch(padded)).status, 200, 'a /ping with a query is answered');
  for (let i = 1; i < 800; i++) await (await fetch(padded)).arrayBuffer();

  const logs = join(dir, 'logs');
  for (const name of ['ts_log', 'access_log', 'model_log']) {
    const rolled = (): string[] => readdirSync(logs).filter((f) => f.startsWith(`${name}.`) && f !== `${name}.log`);
    await waitFor(() => rolled().length === 2 && rolled().every((f) => f.endsWith('.log.gz')), 20_000, `two compressed rolls of ${name}`);
    t.match(rolled(), [/^\w+\.\d\d-[A-Z][a-z]{2}(\.\d+)?\.log\.gz$/, /\.log\.gz$/], `${name}: the newest two rolls, as <name>.<dd-MMM>.log.gz`);
    t.ok(statSync(join(logs, `${name}.log`)).size <= limit, `${name}.log is below the limit`);
    const text = gunzipSync(readFileSync(join(logs, rolled()[0]!))).toString('utf8');
    t.ok(text.length > limit / 2 && text.length <= limit, `a roll holds up to ${limit} bytes (${text.length})`);
    t.match(text.split('\n')[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3} /, 'of whole lines in the log layout');
  }
  await survived(t, childServer(urls), { models: ['chatty'], sent, answered, serverPid: startedPid(dir) });
});

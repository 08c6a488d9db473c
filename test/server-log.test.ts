// The server log as operators read it: under log_format=json every line of ts_log.log is one JSON
// object, whoever wrote it (the server, Node itself, a worker), through a whole `tsserve --start`,
// predictions and `--stop`; and the log starts with a summary of what the server runs with, as
// TorchServe's does (version, config file, model store, listeners).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { VERSION } from '../dist/src/version.js';
import { buildMar, FIXTURES, ROOT, startedPid, startTestServer, tempDir, waitFor, writeUserConfig, tsserve } from './helpers.js';

interface JsonRecord {
  level: number;
  time: string;
  msg: string;
  worker?: string;
  summary?: Record<string, unknown>;
}

t.test(
  'log_format=json: every line of ts_log.log is a JSON record through --start, predictions and --stop, what Node and a worker write included',
  async (t) => {
    const dir = tempDir(t);
    const env = { TMPDIR: dir };
    const store = join(dir, 'model-store');
    mkdirSync(store);
    buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
    // Node itself writes: V8's GC trace (past JavaScript, on the process's stdout) and a process
    // warning every half second (through JavaScript, on its stderr).
    const nodeWrites = '--trace-gc --import=data:text/javascript,setInterval(()=>process.emitWarning("from-Node"),500).unref()';
    const urls = await writeUserConfig(dir, ['log_format=json', 'default_workers_per_model=1', `vmargs=${nodeWrites}`]);
    t.teardown(() => tsserve(['--stop'], dir, env));

    const start = tsserve(['--start', '--model-store', 'model-store', '--models', 'echo=echo.mar', '--disable-token-auth'], dir, env);
    t.equal(start.status, 0, start.out);
    const predict = (body: string): Promise<number> => fetch(`${urls.inference}/predictions/echo`, { method: 'POST', body }).then((r) => r.status);
    t.equal(await predict('hi'), 200);
    t.equal(await predict('print'), 200, 'the handler prints (model_log.log)');
    t.equal(await predict('throw'), 503, 'the handler throws');
    t.not(await predict('crash'), 200, 'the worker aborts: Node prints its native stack on the worker’s stderr');
    const log = join(dir, 'logs', 'ts_log.log');
    // tap runs the tests on Node.js 22 with --no-warnings in NODE_OPTIONS, which the server inherits
    // and which silences process warnings: there, Node's warning is not written at all.
    const warns = !process.env.NODE_OPTIONS?.includes('--no-warnings');
    if (warns) {
      await waitFor(() => readFileSync(log, 'utf8').includes('from-Node'), 10_000, "Node's warning in ts_log.log");
    }
    await waitFor(() => readFileSync(log, 'utf8').includes('Native stack trace'), 10_000, "the worker's stderr in ts_log.log");
    t.match(tsserve(['--stop'], dir, env).out, 'tsserve has stopped.');

    const lines = readFileSync(log, 'utf8').split('\n').slice(0, -1);
    const notJson = lines.filter((line) => {
      try {
        return typeof JSON.parse(line) !== 'object';
      } catch {
        return true;
      }
    });
    t.same(notJson, [], `all ${lines.length} lines are JSON objects`);
    const records = lines.flatMap((line) => {
      try {
        return [JSON.parse(line) as JsonRecord];
      } catch {
        return [];
      }
    });
    t.ok(
      records.some((r) => r.msg === 'Model server started.'),
      'what the server printed on its stdout is a record',
    );
    if (warns)
      t.ok(
        records.some((r) => r.level === 40 && r.msg.includes('Warning: from-Node')),
        "Node's warning is a WARN record",
      );
    t.ok(
      records.some((r) => r.worker?.startsWith('W-') && r.msg.includes('Native stack trace')),
      "the worker's stderr is a record naming the worker",
    );
    const summary = records.find((r) => r.msg === 'Start-up configuration')?.summary;
    t.match(
      summary,
      {
        tsserveVersion: VERSION,
        configFile: join(dir, 'config.properties'),
        modelStore: store,
        initialModels: 'echo=echo.mar',
        inferenceAddress: urls.inference,
        managementAddress: urls.management,
        metricsAddress: urls.metrics,
        grpcInferenceAddress: /^127\.0\.0\.1:\d+$/,
        logFormat: 'json',
      },
      'the start-up summary, once, as one record',
    );
    t.equal(records.filter((r) => r.msg === 'Start-up configuration').length, 1, 'written once');
    const stdio = join(dir, 'logs', 'ts_stdio.log');
    t.ok(existsSync(stdio) && /Scavenge|Mark-Compact/.test(readFileSync(stdio, 'utf8')), 'what V8 printed past JavaScript is kept beside it, in ts_stdio.log');
  },
);

t.test("the text layout: the start-up summary is TorchServe's, a `Label: value` line per entry under its record", async (t) => {
  const lines: string[] = [];
  const server = await startTestServer(t, { properties: { load_models: 'a.mar,b=b.mar' }, serverLog: (line) => lines.push(line), level: 'info' });
  const text = lines.join('');
  t.match(text, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3} \[INFO \] main tsserve - Start-up configuration\ntsserve version: /m, 'the record, then its entries');
  for (const line of [
    `tsserve version: ${VERSION}`,
    `Config file: ${join(server.dir, 'config.properties')}`,
    `Model Store: ${server.store}`,
    'Initial Models: a.mar,b=b.mar',
    'Inference address: http://127.0.0.1:0',
    'Management address: http://127.0.0.1:0',
    'Metrics address: http://127.0.0.1:0',
    'gRPC inference address: 127.0.0.1:0',
    `Log dir: ${join(server.dir, 'logs')}`,
    'Log format: text',
  ]) {
    t.ok(text.split('\n').includes(line), line);
  }
  t.equal(text.match(/Start-up configuration/g)?.length, 1, 'once');
});

t.test(
  'log_format=json in the foreground (a container): every line of stdout is a JSON record, the configuration warnings and start-up lines included',
  async (t) => {
    const dir = tempDir(t);
    mkdirSync(join(dir, 'model-store'));
    await writeUserConfig(dir, ['log_format=json', 'no_such_key=1', 'vmargs=--max-old-space-size=300']);
    const server = spawn(
      process.execPath,
      [join(ROOT, 'bin', 'tsserve.js'), '--start', '--foreground', '--model-store', 'model-store', '--disable-token-auth'],
      {
        cwd: dir,
        env: { ...process.env, TMPDIR: dir },
      },
    );
    t.teardown(() => server.kill('SIGKILL'));
    let out = '';
    server.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    server.stderr.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    const exited = new Promise((resolve) => server.once('exit', resolve));
    await waitFor(() => out.includes('Model server started.'), 30_000, 'the foreground server');
    server.kill('SIGTERM');
    await exited;
    const lines = out.split('\n').slice(0, -1);
    t.same(
      lines.filter((line) => !line.startsWith('{')),
      [],
      'no bare line',
    );
    const messages = lines.map((line) => (JSON.parse(line) as JsonRecord).msg);
    t.ok(
      messages.some((m) => m.startsWith('Unknown configuration key no_such_key')),
      'the configuration warning is a record',
    );
    t.ok(
      messages.some((m) => m.startsWith('Warning: vmargs applies to `tsserve --start` without --foreground')),
      'so is the vmargs warning',
    );
  },
);

t.test('log_format=json: a server that dies of an uncaught exception says so in a FATAL JSON record, the last one logged', async (t) => {
  const dir = tempDir(t);
  const env = { TMPDIR: dir };
  mkdirSync(join(dir, 'model-store'));
  // A bug in the server, as a signal sets it off: an exception nothing catches.
  await writeUserConfig(dir, ['log_format=json', 'vmargs=--import=data:text/javascript,process.on("SIGUSR2",()=>{throw(Error("a-bug"))})']);
  t.teardown(() => tsserve(['--stop'], dir, env));
  const start = tsserve(['--start', '--model-store', 'model-store', '--disable-token-auth'], dir, env);
  t.equal(start.status, 0, start.out);
  const pid = startedPid(dir);
  process.kill(pid, 'SIGUSR2');
  await waitFor(() => !existsSync(`/proc/${pid}`), 10_000, 'the server to die');
  const lines = readFileSync(join(dir, 'logs', 'ts_log.log'), 'utf8')
    .split('\n')
    .slice(0, -1);
  const records = lines.map((line) => JSON.parse(line) as JsonRecord & { err?: { message: string } });
  // Written at once as it comes, synchronously: a write of earlier lines already in flight (a
  // start-up line, in a CI run on Node 22) may still land after it.
  const fatal = records.findIndex((r) => r.level === 60);
  t.match(records[fatal], { level: 60, msg: 'tsserve stops: an uncaught exception', err: { message: 'a-bug' } });
  t.same(
    records.slice(fatal + 1).filter((r) => r.time > records[fatal]!.time),
    [],
    'nothing after it but what was logged before it',
  );
  t.match(readFileSync(join(dir, 'logs', 'ts_stdio.log'), 'utf8'), 'Error: a-bug', "Node's own report of it, past JavaScript, beside it");
});

// `tsserve`'s command line, checked by its own main() in this process (cli-main.ts): the messages
// its validation gives and the usage errors it exits 2 on, before any server starts. Spawned as a
// user runs it, with servers started and stopped, in test/cli.test.ts.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { tempDir } from '../helpers.js';
import { runTsserve } from './cli-main.js';

t.test('start-up validation messages', async (t) => {
  const dir = tempDir(t);
  const noStore = await runTsserve(['--start', '--foreground', '--model-store', 'missing'], dir);
  t.equal(noStore.status, 1);
  t.match(noStore.out, '--model-store directory not found: missing');
  const noConfig = await runTsserve(['--start', '--foreground', '--ts-config', 'nope.properties'], dir);
  t.equal(noConfig.status, 1);
  t.match(noConfig.out, '--ts-config file not found:');
  const mandatory = await runTsserve(['--start', '--foreground'], dir);
  t.equal(mandatory.status, 1);
  t.match(mandatory.out, 'Missing mandatory parameter --model-store');
  const version = await runTsserve(['--version'], dir);
  t.match(version.out, /^tsserve Version is \d+\.\d+\.\d+/);
  const both = await runTsserve(['--start', '--stop'], dir);
  t.not(both.status, 0);
  mkdirSync(join(dir, 'store'));
  const noWorkflows = await runTsserve(['--start', '--foreground', '--model-store', 'store', '--workflow-store', 'wf'], dir);
  t.equal(noWorkflows.status, 1);
  t.match(noWorkflows.out, '--workflow-store directory not found: wf', "torchserve's flag is known and checked, not an unknown option");
  const noCppLog = await runTsserve(['--start', '--foreground', '--model-store', 'store', '--cpp-log-config', 'log.xml'], dir);
  t.match(noCppLog.out, '--cpp-log-config file not found: log.xml');
});

t.test('usage errors exit 2, as torchserve (argparse) does; --help is no error (an unknown flag: test/cli.test.ts, spawned)', async (t) => {
  const dir = tempDir(t);
  t.equal((await runTsserve(['--start', '--stop'], dir)).status, 2, 'tsserve: --start with --stop');
  t.equal((await runTsserve(['--help'], dir)).status, 0, '--help is no error');
});

// On a Node.js older than package.json's engines (20 is still common), every entry point stops at
// once with one line naming the version it needs: `tsserve` and the other commands, and `npm test`
// (its `pretest`, before the lint, the build and 58 test files each printing the same stack).
// Run with an old Node.js when the machine has one: OLD_NODE, else /usr/bin/node if it is older.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT, tempDir } from './helpers.js';

const OLD_NODE = process.env.OLD_NODE ?? '/usr/bin/node';
const oldVersion = existsSync(OLD_NODE) ? spawnSync(OLD_NODE, ['--version'], { encoding: 'utf8' }).stdout.trim() : '';
const old = /^v(1\d|20|21)\./.test(oldVersion) || /^v22\.(\d|1[01])\./.test(oldVersion);

t.test(
  `on ${oldVersion || 'an old Node.js'}, the commands stop at once with one line`,
  { skip: !old && `no Node.js older than 22.12 at ${OLD_NODE}` },
  async (t) => {
    const dir = tempDir(t);
    for (const bin of ['tsserve', 'tsserve-archiver', 'tsserve-convert', 'tsserve-app']) {
      const r = spawnSync(OLD_NODE, [join(ROOT, 'bin', `${bin}.js`), '--start'], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 30_000,
        env: { ...process.env, TMPDIR: dir },
      });
      t.equal(r.status, 1, bin);
      t.equal(r.stdout, '', `${bin}: nothing started`);
      t.equal(r.stderr, `${bin}: Node.js 22.12 or later is needed; this is Node.js ${oldVersion} (${OLD_NODE}).\n`);
    }
  },
);

t.test(
  `on ${oldVersion || 'an old Node.js'}, npm test stops at once with one line`,
  { skip: !old && `no Node.js older than 22.12 at ${OLD_NODE}` },
  async (t) => {
    // A copy of what npm test starts from (package.json, bin/): if the check did not stop it, it
    // would run the lint of an empty tree there, never the suite.
    const dir = tempDir(t);
    mkdirSync(join(dir, 'repo'));
    for (const file of ['package.json', 'bin']) cpSync(join(ROOT, file), join(dir, 'repo', file), { recursive: true });
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
    const r = spawnSync('npm', ['test'], {
      cwd: join(dir, 'repo'),
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...env, PATH: `${join(OLD_NODE, '..')}:${env.PATH}` },
    });
    t.not(r.status, 0);
    // npm's own banner (`> tsserve@0.1.0 pretest`, the command) aside, one line.
    const lines = (r.stdout + r.stderr).split('\n').filter((line) => line !== '' && !line.startsWith('> '));
    t.same(lines, [
      `tsserve's tests (they load TypeScript with module.registerHooks): Node.js 22.15 or later is needed; this is Node.js ${oldVersion} (${OLD_NODE}).`,
    ]);
  },
);

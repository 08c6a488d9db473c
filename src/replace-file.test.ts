// A file replaced whole, with what may lie at the name it is written under first.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { replaceFile, replaceFileSync } from './replace-file.js';

function folder(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-replace-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a link planted at `<name>.tmp` takes nothing elsewhere: the new content is written under a name of its own', async (t) => {
  for (const [how, replace] of [
    ['replaceFileSync', async (path: string, data: string) => replaceFileSync(path, data, 0o600)],
    ['replaceFile', (path: string, data: string) => replaceFile(path, data)],
  ] as const) {
    const dir = folder(t);
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'untouched');
    chmodSync(victim, 0o644);
    const path = join(dir, 'key_file.json');
    symlinkSync(victim, `${path}.tmp`);
    await replace(path, '{"new": true}');
    t.equal(readFileSync(path, 'utf8'), '{"new": true}', `${how}: the file has its new content`);
    t.equal(readFileSync(victim, 'utf8'), 'untouched', `${how}: the link's target is not written`);
    t.equal(statSync(victim).mode & 0o777, 0o644, `${how}: nor made the file's mode`);
    t.notOk(statSync(path).isSymbolicLink(), `${how}: the file is a file of its own`);
  }
});

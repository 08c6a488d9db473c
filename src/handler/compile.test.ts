import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { uncompiledTypeScript } from './compile.js';

t.test('uncompiledTypeScript lists the sources without their .js, and walks neither node_modules nor links', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-compile-'));
  const outside = mkdtempSync(join(tmpdir(), 'tsserve-compile-outside-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });
  writeFileSync(join(dir, 'handler.ts'), 'export {};');
  mkdirSync(join(dir, 'lib'));
  writeFileSync(join(dir, 'lib', 'util.ts'), 'export {};');
  writeFileSync(join(dir, 'lib', 'util.js'), 'export {};');
  writeFileSync(join(dir, 'lib', 'types.d.ts'), 'export {};');
  mkdirSync(join(dir, 'lib', 'deep'));
  writeFileSync(join(dir, 'lib', 'deep', 'more.ts'), 'export {};');
  mkdirSync(join(dir, 'node_modules', 'pkg'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', 'pkg', 'index.ts'), 'export {};');
  // What linkPackages makes: links out of the model directory, one of them back above it.
  writeFileSync(join(outside, 'elsewhere.ts'), 'export {};');
  symlinkSync(outside, join(dir, 'linked'), 'dir');
  symlinkSync(dir, join(dir, 'node_modules', 'self'), 'dir');
  t.same(uncompiledTypeScript(dir).sort(), [join(dir, 'handler.ts'), join(dir, 'lib', 'deep', 'more.ts')]);
});

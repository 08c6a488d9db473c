// The one test of "this name stays inside the model directory", for archive entries and manifest paths.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { existingInside, resolveInside } from './inside.js';

const DIR = '/models/m';

t.test('relative names inside the directory resolve there, `..` that stays inside included', async (t) => {
  t.equal(resolveInside(DIR, 'model.onnx'), '/models/m/model.onnx');
  t.equal(resolveInside(DIR, 'a/../b/model.onnx'), '/models/m/b/model.onnx');
  t.equal(resolveInside(DIR, 'a\\model.onnx'), '/models/m/a/model.onnx', 'a backslash is a separator, as in a Windows-made archive');
  t.equal(resolveInside(DIR, '.'), DIR, 'the directory itself');
});

t.test('absolute names, drive letters and names that climb out are refused', async (t) => {
  for (const name of ['/etc/passwd', '../other/model.onnx', 'a/../../x', '..\\..\\x', 'C:\\x', 'c:x', '../m2/x']) {
    t.equal(resolveInside(DIR, name), undefined, name);
  }
});

t.test('existingInside: only what is there', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-inside-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'sample.txt'), 'x');
  t.equal(existingInside(dir, 'sub/sample.txt'), join(dir, 'sub', 'sample.txt'));
  t.equal(existingInside(dir, 'missing.txt'), undefined);
  t.equal(existingInside(dir, '../../etc/hostname'), undefined, 'outside, though it exists');
});

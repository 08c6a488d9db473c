import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { linkPackages } from './link-packages.js';

t.test('a model directory resolves tsserve and its dependencies through the links', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-links-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  linkPackages(dir);
  const fromModel = createRequire(join(dir, 'handler.js'));
  const own = JSON.parse(readFileSync(join(dir, 'node_modules', 'tsserve', 'package.json'), 'utf8')) as { name: string };
  t.equal(own.name, 'tsserve', 'node_modules/tsserve is this package');
  t.match(realpathSync(fromModel.resolve('tsserve')), /dist\/src\/index\.js$/, 'import "tsserve" resolves to its entry point');
  t.match(realpathSync(fromModel.resolve('sharp')), /node_modules\/sharp\//, 'and its dependencies');
  linkPackages(dir);
  t.pass('a second call leaves the existing links alone');
});

t.test('a package the model brought keeps its own copy; the rest are linked beside it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-links-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'node_modules', 'yaml'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', 'yaml', 'package.json'), JSON.stringify({ name: 'yaml', version: '0.0.1-own', main: 'index.js' }));
  writeFileSync(join(dir, 'node_modules', 'yaml', 'index.js'), 'module.exports = "the model\'s own";');
  linkPackages(dir);
  const fromModel = createRequire(join(dir, 'handler.js'));
  t.equal(fromModel('yaml'), "the model's own");
  t.match(realpathSync(fromModel.resolve('tsserve')), /dist\/src\/index\.js$/, 'tsserve is linked beside it');
});

import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { linkPackages } from './link-packages.js';

/** A folder of model directories, as <tmpdir>/tsserve-models, and one model directory in it. */
function modelDirIn(t: Test): { folder: string; dir: string } {
  const folder = mkdtempSync(join(tmpdir(), 'tsserve-links-'));
  t.teardown(() => rmSync(folder, { recursive: true, force: true }));
  const dir = join(folder, 'model');
  mkdirSync(dir);
  return { folder, dir };
}

t.test('a model directory resolves tsserve and its dependencies through the links', async (t) => {
  const { dir } = modelDirIn(t);
  linkPackages(dir);
  const fromModel = createRequire(join(dir, 'handler.js'));
  const own = JSON.parse(readFileSync(join(dir, 'node_modules', 'tsserve', 'package.json'), 'utf8')) as { name: string };
  t.equal(own.name, 'tsserve', 'node_modules/tsserve is this package');
  t.match(realpathSync(fromModel.resolve('tsserve')), /dist\/src\/index\.js$/, 'import "tsserve" resolves to its entry point');
  t.match(realpathSync(fromModel.resolve('sharp')), /node_modules\/sharp\//, 'and its dependencies');
  linkPackages(dir);
  t.pass('a second call leaves the existing links alone');
});

t.test("each model's links are a folder of its own, which another model's handler cannot change", async (t) => {
  const { folder, dir } = modelDirIn(t);
  const other = join(folder, 'other');
  mkdirSync(other);
  linkPackages(dir);
  linkPackages(other);
  t.ok(lstatSync(join(dir, 'node_modules')).isDirectory(), 'a folder, not a link');
  rmSync(join(dir, 'node_modules', 'sharp'));
  mkdirSync(join(dir, 'node_modules', 'sharp'));
  writeFileSync(join(dir, 'node_modules', 'sharp', 'package.json'), JSON.stringify({ name: 'sharp', main: 'index.js' }));
  writeFileSync(join(dir, 'node_modules', 'sharp', 'index.js'), 'module.exports = "replaced";');
  rmSync(join(dir, 'node_modules', 'tsserve'));
  t.equal(createRequire(join(dir, 'handler.js'))('sharp'), 'replaced', "what one model's handler changes in its node_modules");
  t.not(createRequire(join(other, 'handler.js'))('sharp'), 'replaced', 'another model does not import (review-10 F1)');
  t.match(realpathSync(createRequire(join(other, 'handler.js')).resolve('tsserve')), /dist\/src\/index\.js$/, 'nor loses (review-12 F1, F2)');
  t.same(readdirSync(folder).sort(), ['model', 'other'], 'and nothing is made beside them');
});

t.test('a package the model brought keeps its own copy; the rest are linked beside it', async (t) => {
  const { dir } = modelDirIn(t);
  mkdirSync(join(dir, 'node_modules', 'yaml'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', 'yaml', 'package.json'), JSON.stringify({ name: 'yaml', version: '0.0.1-own', main: 'index.js' }));
  writeFileSync(join(dir, 'node_modules', 'yaml', 'index.js'), 'module.exports = "the model\'s own";');
  linkPackages(dir);
  const fromModel = createRequire(join(dir, 'handler.js'));
  t.equal(fromModel('yaml'), "the model's own");
  t.match(realpathSync(fromModel.resolve('tsserve')), /dist\/src\/index\.js$/, 'tsserve is linked beside it');
});

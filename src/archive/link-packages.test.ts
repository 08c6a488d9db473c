import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { linkPackages, ownModules } from './link-packages.js';

/** A folder of model directories, as <tmpdir>/tsserve-models, and one model directory in it. */
function modelDirIn(t: Test): { folder: string; dir: string } {
  const folder = mkdtempSync(join(tmpdir(), 'tsserve-links-'));
  t.teardown(() => rmSync(folder, { recursive: true, force: true }));
  const dir = join(folder, 'model');
  mkdirSync(dir);
  return { folder, dir };
}

for (const shared of [true, false]) {
  t.test(`a model directory resolves tsserve and its dependencies through the links (shared: ${shared})`, async (t) => {
    const { dir } = modelDirIn(t);
    linkPackages(dir, shared);
    const fromModel = createRequire(join(dir, 'handler.js'));
    const own = JSON.parse(readFileSync(join(dir, 'node_modules', 'tsserve', 'package.json'), 'utf8')) as { name: string };
    t.equal(own.name, 'tsserve', 'node_modules/tsserve is this package');
    t.match(realpathSync(fromModel.resolve('tsserve')), /dist\/src\/index\.js$/, 'import "tsserve" resolves to its entry point');
    t.match(realpathSync(fromModel.resolve('sharp')), /node_modules\/sharp\//, 'and its dependencies');
    linkPackages(dir, shared);
    t.pass('a second call leaves the existing links alone');
  });
}

t.test("not shared (worker_permission): each model's links are a folder of its own, which another model's handler cannot change", async (t) => {
  const { folder, dir } = modelDirIn(t);
  const other = join(folder, 'other');
  mkdirSync(other);
  linkPackages(dir, false);
  linkPackages(other, false);
  t.ok(lstatSync(join(dir, 'node_modules')).isDirectory(), 'a folder, not a link');
  rmSync(join(dir, 'node_modules', 'sharp'));
  mkdirSync(join(dir, 'node_modules', 'sharp'));
  writeFileSync(join(dir, 'node_modules', 'sharp', 'package.json'), JSON.stringify({ name: 'sharp', main: 'index.js' }));
  writeFileSync(join(dir, 'node_modules', 'sharp', 'index.js'), 'module.exports = "replaced";');
  t.equal(createRequire(join(dir, 'handler.js'))('sharp'), 'replaced', "what one model's handler writes in its node_modules");
  t.not(createRequire(join(other, 'handler.js'))('sharp'), 'replaced', 'another model does not import (review-10 F1)');
  t.same(readdirSync(folder).sort(), ['model', 'other'], 'and no shared folder is made');
});

t.test('a shared folder that is gone (a tmp cleaner, an operator) is made again for the next model', async (t) => {
  const { folder, dir } = modelDirIn(t);
  linkPackages(dir, true);
  rmSync(dirname(realpathSync(join(dir, 'node_modules'))), { recursive: true, force: true });
  const next = join(folder, 'next');
  mkdirSync(next);
  linkPackages(next, true);
  t.match(realpathSync(createRequire(join(next, 'handler.js')).resolve('tsserve')), /dist\/src\/index\.js$/, 'the next model resolves tsserve (review-11 F5)');
});

t.test('model directories without a node_modules get one link each, to links made once beside them', async (t) => {
  const { folder, dir } = modelDirIn(t);
  const other = join(folder, 'other');
  mkdirSync(other);
  linkPackages(dir, true);
  linkPackages(other, true);
  t.ok(lstatSync(join(dir, 'node_modules')).isSymbolicLink(), "a model's node_modules is one link");
  t.equal(realpathSync(join(dir, 'node_modules')), realpathSync(join(other, 'node_modules')), 'the same folder of links for both');
  const shared = readdirSync(folder).filter((name) => !['model', 'other'].includes(name));
  t.match(
    shared,
    [new RegExp(`^${process.pid}-[0-9a-f]{32}$`)],
    "named as a model directory of this process's, so a crash's leftovers are removed at the next start",
  );
  t.match(realpathSync(createRequire(join(other, 'handler.js')).resolve('tsserve')), /dist\/src\/index\.js$/);
});

t.test('before npm installs for a model, its node_modules becomes a folder of its own', async (t) => {
  const { dir } = modelDirIn(t);
  linkPackages(dir, true);
  const shared = realpathSync(join(dir, 'node_modules'));
  ownModules(dir);
  mkdirSync(join(dir, 'node_modules', 'yaml'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', 'yaml', 'package.json'), JSON.stringify({ name: 'yaml', version: '0.0.1-own', main: 'index.js' }));
  writeFileSync(join(dir, 'node_modules', 'yaml', 'index.js'), 'module.exports = "installed for the model";');
  linkPackages(dir, true);
  t.notOk(lstatSync(join(dir, 'node_modules')).isSymbolicLink(), 'a folder, not the link');
  t.equal(createRequire(join(dir, 'handler.js'))('yaml'), 'installed for the model');
  t.notOk(realpathSync(join(shared, 'yaml')).startsWith(dir), "the shared links still lead to tsserve's own yaml");
});

t.test('a package the model brought keeps its own copy; the rest are linked beside it', async (t) => {
  const { dir } = modelDirIn(t);
  mkdirSync(join(dir, 'node_modules', 'yaml'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', 'yaml', 'package.json'), JSON.stringify({ name: 'yaml', version: '0.0.1-own', main: 'index.js' }));
  writeFileSync(join(dir, 'node_modules', 'yaml', 'index.js'), 'module.exports = "the model\'s own";');
  linkPackages(dir, true);
  const fromModel = createRequire(join(dir, 'handler.js'));
  t.equal(fromModel('yaml'), "the model's own");
  t.match(realpathSync(fromModel.resolve('tsserve')), /dist\/src\/index\.js$/, 'tsserve is linked beside it');
});

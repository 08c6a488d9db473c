import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
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
  t.pass('a second call leaves the existing node_modules alone');
});

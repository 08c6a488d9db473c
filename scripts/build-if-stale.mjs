// tap runs this before any test file (package.json "tap.before"): the end-to-end tests import the
// server from dist/, so `npx tap test/x.test.ts` after an edit of src/ would test the old build.
// It compiles (tsc -p tsconfig.json) when a source file is newer than the last build, else
// does nothing; npm test has just built, so there it costs a directory walk.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
// tsc writes every output file each time it builds: one of them dates the last build.
const stamp = join(root, 'dist', 'src', 'index.js');

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function builtAt() {
  try {
    return statSync(stamp).mtimeMs;
  } catch {
    return 0;
  }
}

const sources = Math.max(newestSource(join(root, 'src')), newestSource(join(root, 'handlers')), statSync(join(root, 'tsconfig.json')).mtimeMs);
if (sources > builtAt()) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const started = Date.now();
  const { status } = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
  if (status !== 0) process.exit(status ?? 1);
  console.error(`# built dist/ for the tests (${Date.now() - started} ms): a source was newer than the last build`);
}

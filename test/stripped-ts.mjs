// Node.js 22 strips a .ts module's types with a WebAssembly build of swc at every load, in every
// process: 0.2-0.4 CPU-s of each test file's (the test, its helpers, and for the in-process tier the
// server's sources), and V8's compile cache does not keep its output. Node 24 does not pay it. On
// 22 the stripped source is kept by the hash of the file's URL and text, and only a new text is
// stripped: test/resolve-ts.mjs loads through it, and npm test (scripts/test.mjs) fills it first.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as nodeModule from 'node:module';
import { join } from 'node:path';

/** Whether this Node.js strips types slowly, and the stripped sources are kept. */
export const keepsStripped = Number(process.versions.node.split('.')[0]) < 24;

/** The folder of the kept sources, inside the tests' compile cache. */
export function strippedDir(compileCache) {
  const dir = join(compileCache, 'stripped-ts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The module at `url`, whose text is `text`, with its types stripped: kept in `dir`, or stripped now and kept. */
export function strippedSource(dir, url, text) {
  const kept = join(dir, `${createHash('sha1').update(url).update('\0').update(text).digest('hex')}.js`);
  try {
    return readFileSync(kept, 'utf8');
  } catch {
    const source = nodeModule.stripTypeScriptTypes(text);
    const partial = `${kept}.${process.pid}`;
    writeFileSync(partial, source);
    renameSync(partial, kept);
    return source;
  }
}

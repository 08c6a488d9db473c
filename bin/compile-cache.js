// Node's compile cache for tsserve's processes: V8's code cache of each module, kept on disk, so
// that a start after the first does not parse and compile the server's modules (Fastify, gRPC,
// ours) again, nor a worker its own (onnxruntime-node's, the handler's). It lives in
// NODE_COMPILE_CACHE, else in <tmpdir>/tsserve-compile-cache-<uid> (one folder per Node.js version
// in it), and Node checks each entry against its source. A folder that cannot be written leaves the
// cache off and changes nothing else; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
import { lstatSync, mkdirSync } from 'node:fs';
import module from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The default folder, made private to this user. The temporary folder is shared by every user of
 * the machine, and V8 trusts the code it reads back: a folder someone else made first, or may
 * write to, could hand this process code of theirs. Such a folder leaves the cache off.
 */
function privateFolder() {
  const uid = process.getuid?.() ?? -1;
  const folder = join(tmpdir(), `tsserve-compile-cache-${uid}`);
  try {
    mkdirSync(folder, { mode: 0o700 });
  } catch (err) {
    if (err?.code !== 'EEXIST') return undefined;
  }
  const found = lstatSync(folder, { throwIfNoEntry: false });
  const ours = found?.isDirectory() && (uid === -1 || found.uid === uid) && (found.mode & 0o022) === 0;
  return ours ? folder : undefined;
}

/**
 * Turns the cache on for this process's modules from here on, and through NODE_COMPILE_CACHE for
 * the processes it starts (the server `--start` launches, the workers) from their first module.
 */
export function compileCache() {
  // Node's own switch: off, so no folder is made either.
  if (process.env.NODE_DISABLE_COMPILE_CACHE) return;
  const folder = process.env.NODE_COMPILE_CACHE || privateFolder();
  if (!folder) return;
  const { status } = module.enableCompileCache?.(folder) ?? {};
  const { ENABLED, ALREADY_ENABLED } = module.constants.compileCacheStatus;
  if (status === ENABLED || status === ALREADY_ENABLED) process.env.NODE_COMPILE_CACHE = folder;
}

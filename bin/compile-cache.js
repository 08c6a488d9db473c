// Node's compile cache for tsserve's processes: V8's code cache of each module, kept on disk, so
// that a start after the first does not parse and compile the server's modules (Fastify, gRPC,
// ours) again, nor a worker its own (onnxruntime-node's, the handler's). It lives in
// NODE_COMPILE_CACHE, else in <tmpdir>/node-compile-cache (one folder per Node.js version in it),
// and Node checks each entry against its source. A folder that cannot be written leaves the cache
// off and changes nothing else; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
import module from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Turns the cache on for this process's modules from here on, and through NODE_COMPILE_CACHE for
 * the processes it starts (the server `--start` launches, the workers) from their first module.
 */
export function compileCache() {
  const directory = process.env.NODE_COMPILE_CACHE || join(tmpdir(), 'node-compile-cache');
  const { status } = module.enableCompileCache?.(directory) ?? {};
  const { ENABLED, ALREADY_ENABLED } = module.constants.compileCacheStatus;
  if (status === ENABLED || status === ALREADY_ENABLED) process.env.NODE_COMPILE_CACHE = directory;
}

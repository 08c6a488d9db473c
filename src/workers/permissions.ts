/**
 * @module workers/permissions
 * worker_permission: a worker process under Node's permission model. Its handler then reads only
 * its model's directory and tsserve's own code and packages, writes only its model's directory,
 * and starts no process; so it cannot read key_file.json (the server's keys), nor any other file
 * of the server's. Off by default, for it is an allow-list: a handler that reads or writes
 * elsewhere (a shared data folder, os.tmpdir()), shells out, or is preloaded with a NODE_OPTIONS
 * module that uses process.binding (APM agents, coverage tools) fails under it. Native addons
 * (onnxruntime, sharp) open files by their own means, which the model does not see.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** tsserve's package: dist/src/workers/ is three folders below it. */
const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The Node flags a worker of the model in `modelDir` runs with. */
export function permissionArgs(modelDir: string): string[] {
  const readable = [join(PACKAGE_ROOT, 'dist'), join(PACKAGE_ROOT, 'package.json'), ...nodeModulesAbove(PACKAGE_ROOT), modelDir];
  return [
    '--permission',
    // onnxruntime-node and sharp are addons; module hooks (worker/hooks.ts) run on a thread.
    '--allow-addons',
    '--allow-worker',
    '--disable-warning=SecurityWarning',
    ...readable.map((path) => `--allow-fs-read=${path}`),
    `--allow-fs-write=${modelDir}`,
  ];
}

/** Where Node resolves tsserve's own imports from: each node_modules on the way up. */
function nodeModulesAbove(from: string): string[] {
  const found: string[] = [];
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules');
    if (existsSync(candidate)) found.push(candidate);
    if (dirname(dir) === dir) return found;
  }
}

/**
 * @module archive/link-packages
 * An extracted model directory gets a `node_modules` of links to tsserve and its dependencies,
 * so its handler's `import 'tsserve'` (or 'sharp', 'onnxruntime-node', ...) resolves as Node
 * resolves any import. Without them each worker needs module hooks to redirect bare specifiers,
 * and Node runs those hooks on a thread of their own: a second V8 isolate, 13 MB per worker.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tsError } from '../errors.js';

/** The folder of tsserve's package.json: the nearest one above this file (in src/ or dist/src/). */
const PACKAGE_ROOT = nearestPackageRoot(dirname(fileURLToPath(import.meta.url)));

/** Per folder of model directories: the folder of links this process made there (sharedModules). */
const sharedByFolder = new Map<string, string>();

/**
 * A model directory without a node_modules (an archive brings none, mostly) gets one: `shared`, a
 * link to a node_modules of links this process makes once beside it (~25 links and 5 folders were
 * each registration's, 25,000 for 1,000 models, each one a synchronous write on the event loop);
 * else a folder of links of its own, which is what a worker under Node's permission model gets
 * (workers/permissions.ts: a link shared by every model would let one model's handler, which may
 * write its own directory, change what the others import). With a node_modules of its own (the
 * archive's, or npm's for the model: archive/dependencies.ts) it links what is missing there: a
 * package the model has keeps its own copy.
 */
export function linkPackages(modelDir: string, shared: boolean): void {
  const modules = join(modelDir, 'node_modules');
  const found = lstatSync(modules, { throwIfNoEntry: false });
  if (found === undefined && shared) symlinkSync(sharedModules(dirname(modelDir)), modules, 'dir');
  else if (found === undefined || found.isDirectory()) linkEach(modules);
  // A link is this process's (an archive's links are refused as it is opened): linked already.
  else if (!found.isSymbolicLink()) throw tsError('TSS_ERR_ARCHIVE_INVALID', 'The archive has a node_modules that is not a folder.');
}

/** Before npm installs into a model directory: its node_modules becomes its own, not the shared link. */
export function ownModules(modelDir: string): void {
  const modules = join(modelDir, 'node_modules');
  if (lstatSync(modules, { throwIfNoEntry: false })?.isSymbolicLink()) unlinkSync(modules);
}

/**
 * The shared node_modules in `folder`, made on first use and again if it is gone (a tmp cleaner, an
 * operator), and removed as this process exits. Its name is a model directory's (`<pid>-<32 hex>`),
 * so a crash leaves nothing that the next start's removeStaleExtractions does not remove, and no
 * other user can have made it before us.
 */
function sharedModules(folder: string): string {
  let modules = sharedByFolder.get(folder);
  if (modules === undefined || !existsSync(modules)) {
    const dir = join(folder, `${process.pid}-${randomUUID().replace(/-/g, '')}`);
    modules = join(dir, 'node_modules');
    mkdirSync(modules, { recursive: true });
    linkEach(modules);
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    sharedByFolder.set(folder, modules);
  }
  return modules;
}

/** Links tsserve and each of its dependencies into `modules`, unless there already. */
function linkEach(modules: string): void {
  mkdirSync(modules, { recursive: true });
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { name: string; dependencies?: Record<string, string> };
  link(modules, pkg.name, PACKAGE_ROOT);
  for (const name of Object.keys(pkg.dependencies ?? {})) {
    const target = installed(name);
    if (target) link(modules, name, target);
  }
}

function link(modules: string, name: string, target: string): void {
  const path = join(modules, name);
  if (exists(path)) return;
  mkdirSync(dirname(path), { recursive: true });
  symlinkSync(target, path, 'dir');
}

/** Also true for a link whose target is gone, which symlinkSync could not replace. */
function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function nearestPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

/** Where Node would find `name` from tsserve's own files: the nearest node_modules upwards. */
function installed(name: string): string | undefined {
  for (let dir = PACKAGE_ROOT; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

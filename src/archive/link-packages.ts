/**
 * @module archive/link-packages
 * An extracted model directory gets a `node_modules` of links to tsserve and its dependencies,
 * so its handler's `import 'tsserve'` (or 'sharp', 'onnxruntime-node', ...) resolves as Node
 * resolves any import. Without them each worker needs module hooks to redirect bare specifiers,
 * and Node runs those hooks on a thread of their own: a second V8 isolate, 13 MB per worker.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type TsError, tsError } from '../errors.js';

/** The folder of tsserve's package.json: the nearest one above this file (in src/ or dist/src/). */
const PACKAGE_ROOT = nearestPackageRoot(dirname(fileURLToPath(import.meta.url)));

/**
 * Links what is missing: a package the archive brought, or that npm installed for the model
 * (archive/dependencies.ts), keeps its own copy; tsserve and the rest are linked beside it. Each
 * model's links are its own: a folder shared by the models (one link a registration, tried on
 * 2026-12-07) let one model's handler, or a tmp cleaner removing old links, break every other
 * model's next worker and registration (review-10 F1, review-12 F1-F5).
 */
export function linkPackages(modelDir: string): void {
  const modules = join(modelDir, 'node_modules');
  const found = lstatSync(modules, { throwIfNoEntry: false });
  if (found !== undefined && !found.isDirectory()) throw tsError('TSS_ERR_ARCHIVE_INVALID', 'The archive has a node_modules that is not a folder.');
  try {
    linkAll(modules);
  } catch (err) {
    throw fullDisk(err, dirname(modelDir)) ?? err;
  }
}

/**
 * A disk out of room (bytes or inodes) for the links is answered as one out of room for the
 * archive's files (archive/extract.ts): the registration's 400, naming the disk, not a 500 of the errno's text.
 */
function fullDisk(err: unknown, models: string): TsError | undefined {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return undefined;
  return tsError('TSS_ERR_ARCHIVE_INVALID', `The disk of ${models} is full: the model's node_modules links could not be made (${(err as Error).message})`);
}

function linkAll(modules: string): void {
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

/**
 * The archives test files build with buildMar, built once per set of inputs. File after file
 * builds the same few (echo.mar from echo_handler.ts, mnist.mar, ...): each build deflated the
 * model again, and the first in a process loaded the TypeScript compiler, about 0.2 CPU-s. The
 * first build of a set of inputs is kept under node_modules/.cache (beside the compile cache,
 * test/resolve-ts.mjs); a later one copies it. Its key is what the archive's bytes depend on:
 * the options, each input's name, mode and content (not where it lies: a test's temporary
 * folder differs each run), the archiver's own code and the versions of the compiler and of
 * the zip and tar packages.
 *
 * The archiver itself is tested through createArchive and the CLI (archiver.test.ts,
 * hostile-archives.test.ts), which do not come here.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ArchiveOptions } from '../dist/src/archive/write.js';
import { isBuiltinHandler, splitHandler } from '../dist/src/handler/builtins.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = join(ROOT, 'node_modules', '.cache', 'tsserve-test-archives');
/** Inputs larger than this (a test's 40 MB of random bytes) are built each time, not kept. */
const MAX_INPUT_BYTES = 16 * 2 ** 20;
/** The archives kept: past this, the least recently used go. */
const MAX_KEPT = 200;

/** One input as the archive holds it: its name there, its mode and its content's hash. */
type Described = string;

/**
 * `build()`'s archive, `exportPath/<name>.mar` (or .tar.gz), from the cache when the same
 * inputs were built before. A build that fails is not kept, and fails again next time.
 */
export function cachedArchive(opts: ArchiveOptions & { exportPath: string }, build: () => string): string {
  const key = keyOf(opts);
  if (key === undefined) return build();
  const kept = join(CACHE, key);
  const output = join(opts.exportPath, `${opts.modelName}${opts.archiveFormat === 'tgz' ? '.tar.gz' : '.mar'}`);
  if (existsSync(kept) && copied(kept, opts.exportPath, output)) return output;
  const built = build();
  keep(built, kept);
  return built;
}

/** False when another test file's clean-up removed it meanwhile (forgetLeastRecentlyUsed). */
function copied(kept: string, exportPath: string, output: string): boolean {
  mkdirSync(exportPath, { recursive: true });
  rmSync(output, { recursive: true, force: true });
  try {
    copyFileSync(kept, output);
    const now = new Date();
    utimesSync(kept, now, now);
    return true;
  } catch {
    return false;
  }
}

/** Undefined when the archive is not one to keep: a directory, large inputs, or inputs that are not there. */
function keyOf(opts: ArchiveOptions): string | undefined {
  if (opts.archiveFormat === 'no-archive') return undefined;
  const inputs = describeInputs(opts);
  if (inputs === undefined) return undefined;
  const plain = [opts.modelName, opts.version, opts.runtime ?? '', opts.archiveFormat ?? 'default', process.env.SOURCE_DATE_EPOCH ?? ''];
  const hash = createHash('sha256').update(archiverCode());
  hash.update(JSON.stringify({ plain, inputs }));
  return hash.digest('hex');
}

/** Each path option's inputs described, in the options' order; undefined if one is missing or they are large. */
function describeInputs(opts: ArchiveOptions): Record<string, Described[]> | undefined {
  let bytes = 0;
  const files = (paths: string[], base: (path: string) => string): Described[] | undefined => {
    const described: Described[] = [];
    for (const path of paths) {
      const st = statSync(path, { throwIfNoEntry: false });
      if (!st?.isFile()) return undefined;
      bytes += st.size;
      if (bytes > MAX_INPUT_BYTES) return undefined;
      described.push(`${base(path)} ${st.mode} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`);
    }
    return described;
  };
  const single = (path: string | undefined): Described[] | undefined => (path === undefined ? [] : files([resolve(path)], basename));
  const parts = {
    serializedFile: single(opts.serializedFile),
    modelFile: single(opts.modelFile),
    requirementsFile: single(opts.requirementsFile),
    configFile: single(opts.configFile),
    handler: describeHandler(opts.handler, files),
    extraFiles: describeExtraFiles(opts.extraFiles, files),
  };
  return Object.values(parts).every((p) => p !== undefined) ? (parts as Record<string, Described[]>) : undefined;
}

type Files = (paths: string[], base: (path: string) => string) => Described[] | undefined;

/** A built-in handler is its name; a file is found as the archiver finds it (.ts, then .js, .mjs, without an extension). */
function describeHandler(handler: string, files: Files): Described[] | undefined {
  if (isBuiltinHandler(handler)) return [handler];
  const [path = '', fn] = splitHandler(handler);
  const candidates = /\.(m?[jt]s)$/.test(path) ? [path] : [`${path}.ts`, `${path}.js`, `${path}.mjs`];
  const found = candidates.map((c) => resolve(c)).find((c) => statSync(c, { throwIfNoEntry: false })?.isFile());
  const described = found === undefined ? undefined : files([found], basename);
  return described && [...described, fn ?? ''];
}

/** A file is its name; a folder, or a glob's folder, every file under it by its path there. */
function describeExtraFiles(list: string | undefined, files: Files): Described[] | undefined {
  const described: Described[] = [];
  for (const item of (list ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const path = resolve(item);
    const glob = /[*?[]/.test(basename(path));
    const folder = glob ? dirname(path) : path;
    const st = statSync(folder, { throwIfNoEntry: false });
    if (!st) return undefined;
    const part = st.isDirectory() ? files(filesUnder(folder), (f) => relative(folder, f)) : files([path], basename);
    if (part === undefined) return undefined;
    described.push(glob ? basename(path) : '', ...part);
  }
  return described;
}

/** Links followed, as the archiver copies what they point to. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? filesUnder(path) : [path];
    });
}

let code: string | undefined;

/** The archiver's built code and the versions of the packages it builds with: a change to any makes other archives. */
function archiverCode(): string {
  code ??= [join(ROOT, 'dist', 'src', 'archive'), join(ROOT, 'dist', 'src', 'handler')]
    .flatMap((dir) =>
      readdirSync(dir)
        .filter((f) => f.endsWith('.js'))
        .map((f) => readFileSync(join(dir, f), 'utf8')),
    )
    .concat(['typescript', 'adm-zip', 'tar'].map(packageVersion))
    .join('\0');
  return code;
}

function packageVersion(name: string): string {
  const pkg = join(ROOT, 'node_modules', name, 'package.json');
  return existsSync(pkg) ? `${name}@${(JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version}` : `${name} absent`;
}

/** Kept by a rename, so that test files building the same archive at once never see half of one. */
function keep(built: string, kept: string): void {
  mkdirSync(CACHE, { recursive: true });
  const partial = `${kept}.${process.pid}.partial`;
  copyFileSync(built, partial);
  renameSync(partial, kept);
  forgetLeastRecentlyUsed();
}

function forgetLeastRecentlyUsed(): void {
  const entries = readdirSync(CACHE).filter((name) => !name.endsWith('.partial'));
  if (entries.length <= MAX_KEPT) return;
  const byUse = entries.map((name) => ({ name, used: statSync(join(CACHE, name), { throwIfNoEntry: false })?.mtimeMs ?? 0 })).sort((a, b) => a.used - b.used);
  for (const { name } of byUse.slice(0, entries.length - MAX_KEPT)) rmSync(join(CACHE, name), { force: true });
}

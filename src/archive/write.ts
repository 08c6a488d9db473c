/**
 * @module archive/write
 * What `tsserve-archiver` does: stage the model's files as torch-model-archiver does
 * (`<tmp>/<model-name>/`), write MAR-INF/MANIFEST.json, then pack the stage as a .mar (zip),
 * a .tar.gz or a plain directory. TypeScript sources are compiled to `.js` beside themselves at
 * this point, so a worker loads plain JavaScript and never pays for the compiler.
 *
 * Archives are reproducible: entries are in one order, nothing of the temporary stage is written
 * in, and every timestamp (the entries' and the manifest's `createdOn`) is one date, now or
 * `SOURCE_DATE_EPOCH` (the reproducible-builds convention): with it set, the same inputs make the
 * same bytes (scripts/build-model-store.js sets it for the committed example archives).
 */
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import AdmZip from 'adm-zip';
import * as tar from 'tar';
import { tsError } from '../errors.js';
import { replacePathSync } from '../replace-file.js';
import { MODEL_NAME } from './model-name.js';
import { ARCHIVER_VERSION, formatCreatedOn, formatManifest, MANIFEST_PATH, RUNTIMES, type Manifest } from './manifest.js';
import { closestName } from '../config/keys.js';
import { BUILTIN_HANDLERS, isBuiltinHandler, splitHandler } from '../handler/builtins.js';
import { compileTypeScript, uncompiledTypeScript } from '../handler/compile.js';

export const ARCHIVE_FORMATS = ['default', 'zip-store', 'tgz', 'no-archive'] as const;
export type ArchiveFormat = (typeof ARCHIVE_FORMATS)[number];

export interface ArchiveOptions {
  modelName: string;
  version: string;
  handler: string;
  serializedFile?: string;
  modelFile?: string;
  extraFiles?: string;
  runtime?: string;
  exportPath?: string;
  archiveFormat?: ArchiveFormat;
  force?: boolean;
  requirementsFile?: string;
  configFile?: string;
}

export class ArchiverError extends Error {}

const SKIPPED_DIRS = new Set(['__MACOSX', '__pycache__', 'node_modules']);

/** Builds the archive and returns the path written. */
export function createArchive(opts: ArchiveOptions, cwd: string = process.cwd()): string {
  validateOptions(opts);
  const format = opts.archiveFormat ?? 'default';
  const exportPath = prepareExportPath(resolve(cwd, opts.exportPath ?? '.'));
  const output = join(exportPath, outputName(opts.modelName, format));
  if (existsSync(output) && !opts.force) {
    throw new ArchiverError(
      `${output} already exists.\nPlease specify --force/-f option to overwrite the model archive output file.\nSee -h/--help for more details.`,
    );
  }
  const stageRoot = mkdtempSync(join(tmpdir(), 'tsserve-archiver-'));
  const stage = join(stageRoot, opts.modelName);
  const date = archiveDate();
  try {
    mkdirSync(stage);
    const manifest = stageFiles(opts, stage, cwd, date);
    mkdirSync(join(stage, 'MAR-INF'));
    writeFileSync(join(stage, MANIFEST_PATH), formatManifest(manifest));
    writeWhole(output, (beside) => pack(stage, beside, format, date));
  } finally {
    rmSync(stageRoot, { recursive: true, force: true });
  }
  return output;
}

/**
 * Replaced whole, so that a full disk or a crash mid-write leaves the archive it was to replace;
 * a failure to write (ENOSPC, EACCES) is the archiver's error, said in a line.
 */
function writeWhole(output: string, write: (beside: string) => void): void {
  try {
    replacePathSync(output, write);
  } catch (err) {
    throw new ArchiverError(`${output} could not be written: ${(err as Error).message}`);
  }
}

/** The one date an archive carries: SOURCE_DATE_EPOCH (seconds since 1970) when set, else now. */
function archiveDate(): Date {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch === undefined || epoch === '') return new Date();
  if (!/^\d+$/.test(epoch)) throw new ArchiverError(`SOURCE_DATE_EPOCH=${epoch} is not a whole number of seconds since 1970.`);
  return new Date(Number(epoch) * 1000);
}

/** A plain line on stderr: the archiver is a command, and these are not Node.js process warnings. */
function notice(message: string): void {
  console.error(message);
}

function validateOptions(opts: ArchiveOptions): void {
  if (!MODEL_NAME.test(opts.modelName)) {
    throw new ArchiverError(tsError('TSS_ERR_MODEL_NAME_INVALID', 'name', 'name').message);
  }
  if (opts.runtime && !(RUNTIMES as readonly string[]).includes(opts.runtime)) {
    throw new ArchiverError(`Invalid runtime: ${opts.runtime}. Choose one of ${RUNTIMES.join(', ')}.`);
  }
  if (opts.archiveFormat && !(ARCHIVE_FORMATS as readonly string[]).includes(opts.archiveFormat)) {
    throw new ArchiverError(`Invalid archive format: ${opts.archiveFormat}. Choose one of ${ARCHIVE_FORMATS.join(', ')}.`);
  }
}

function prepareExportPath(path: string): string {
  if (!existsSync(path)) {
    notice(`Export path ${path} does not exist; creating it.`);
    mkdirSync(path, { recursive: true });
  } else if (!statSync(path).isDirectory()) {
    throw new ArchiverError(`Given export-path ${path} is not a directory. Point to a valid export-path directory.`);
  }
  return path;
}

function outputName(modelName: string, format: ArchiveFormat): string {
  if (format === 'tgz') return `${modelName}.tar.gz`;
  return format === 'no-archive' ? modelName : `${modelName}.mar`;
}

/** Copies every input into the stage and returns the manifest describing them. */
function stageFiles(opts: ArchiveOptions, stage: string, cwd: string, date: Date): Manifest {
  const copy = (path: string): string => copyInto(stage, requireFile(resolve(cwd, path)));
  const model: Manifest['model'] = { modelName: opts.modelName };
  if (opts.serializedFile) model.serializedFile = copy(opts.serializedFile);
  model.handler = stageHandler(opts.handler, stage, cwd);
  if (opts.modelFile) model.modelFile = copy(opts.modelFile);
  model.modelVersion = opts.version;
  if (opts.requirementsFile) model.requirementsFile = copy(opts.requirementsFile);
  if (opts.configFile) model.configFile = copy(opts.configFile);
  for (const path of expandExtraFiles(opts.extraFiles, cwd)) copyExtra(path, stage);
  compileStagedTypeScript(stage);
  return {
    createdOn: formatCreatedOn(date),
    runtime: opts.runtime ?? 'python',
    model,
    archiverVersion: ARCHIVER_VERSION,
  };
}

/**
 * A built-in name is written as is; a file is copied and named by its basename, keeping any
 * `:function` suffix (`/x/my_handler.ts:fn` -> `my_handler.ts:fn`). A path without an extension
 * is looked up as .ts, then .js.
 */
function stageHandler(handler: string, stage: string, cwd: string): string {
  if (isBuiltinHandler(handler)) return handler;
  const [path = '', fn] = splitHandler(handler);
  const candidates = /\.(m?[jt]s)$/.test(path) ? [path] : [`${path}.ts`, `${path}.js`, `${path}.mjs`];
  const found = candidates.map((c) => resolve(cwd, c)).find((c) => existsSync(c) && statSync(c).isFile());
  if (!found) throw new ArchiverError(`File does not exist: ${resolve(cwd, candidates[0]!)}${builtinSuggestion(handler)}`);
  const name = copyInto(stage, found);
  return fn ? `${name}:${fn}` : name;
}

/** A handler that looks like a mistyped built-in name rather than a path: the name it is nearest. */
function builtinSuggestion(handler: string): string {
  if (/[/\\.:]/.test(handler)) return '';
  const near = closestName(handler, BUILTIN_HANDLERS);
  return near ? ` (did you mean the built-in handler ${near}?)` : '';
}

function requireFile(path: string): string {
  if (!existsSync(path)) throw new ArchiverError(`File does not exist: ${path}`);
  return path;
}

function copyInto(stage: string, file: string): string {
  const name = basename(file);
  copyFileSync(file, join(stage, name));
  return name;
}

/** Comma-separated paths; `*`, `?` and `[...]` match within the last path component. */
function expandExtraFiles(list: string | undefined, cwd: string): string[] {
  if (!list) return [];
  return list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .flatMap((item) => {
      const path = resolve(cwd, item);
      if (!/[*?[]/.test(basename(path))) return [requireFile(path)];
      const pattern = globToRegExp(basename(path));
      const dir = dirname(path);
      const matches = existsSync(dir)
        ? readdirSync(dir)
            .filter((n) => pattern.test(n))
            .map((n) => join(dir, n))
        : [];
      if (matches.length === 0) notice(`No files match ${item}`);
      return matches;
    });
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * A file goes to the root by its basename; a directory's contents go to the root, sub-folders
 * kept. A link is copied as what it points to: an archive holds files, and the stage is compiled
 * and packed as it stands.
 */
function copyExtra(path: string, stage: string): void {
  if (!statSync(path).isDirectory()) {
    copyInto(stage, path);
    return;
  }
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.isDirectory() && (SKIPPED_DIRS.has(entry.name) || entry.name.startsWith('.') || entry.name === 'MAR-INF')) continue;
    cpSync(join(path, entry.name), join(stage, entry.name), {
      recursive: true,
      dereference: true,
      filter: (src) => !basename(src).startsWith('.') && !SKIPPED_DIRS.has(basename(src)),
    });
  }
}

function compileStagedTypeScript(stage: string): void {
  for (const file of uncompiledTypeScript(stage)) {
    // Named as in the archive: the stage's temporary path must not end up in the output.
    writeFileSync(file.replace(/\.ts$/, '.js'), compileTypeScript(readFileSync(file, 'utf8'), relative(stage, file)));
  }
}

/** Sorted: the order a directory lists its entries in is the file system's, not the inputs'. */
function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

function pack(stage: string, output: string, format: ArchiveFormat, date: Date): void {
  if (format === 'no-archive') {
    cpSync(stage, output, { recursive: true });
    return;
  }
  if (format === 'tgz') {
    const entries = listFiles(stage).map((file) => relative(dirname(stage), file));
    tar.c({ gzip: true, file: output, cwd: dirname(stage), sync: true, portable: true, mtime: date, noDirRecurse: true }, entries);
    return;
  }
  const zip = new AdmZip();
  for (const file of listFiles(stage)) {
    const name = file
      .slice(stage.length + 1)
      .split('\\')
      .join('/');
    const entry = zip.addFile(name, readFileSync(file));
    entry.header.time = date;
    if (format === 'zip-store') entry.header.method = 0;
  }
  // Not zip.writeZip, which makes the file 0666 whatever the umask: anyone could swap the model.
  writeFileSync(output, zip.toBuffer());
}

/**
 * @module archive/extract
 * Opens a model archive into a fresh model directory: a .mar (zip), a .tar.gz (first path
 * component stripped, as TorchServe does) or a directory used in place. Entries that would land
 * outside the model directory (`../`, absolute paths, links) refuse the whole archive.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, normalize, resolve, sep } from 'node:path';
import AdmZip from 'adm-zip';
import { TsError, tsError } from '../errors.js';
import { linkPackages } from './link-packages.js';

/** The parent of every extracted model directory, as TorchServe's `<tmpdir>/models`. */
export const MODELS_ROOT = join(tmpdir(), 'tsserve-models');

export interface OpenedModel {
  /** Where the model's files are. */
  readonly dir: string;
  /** True when `dir` was created by extraction and must be removed on unregister. */
  readonly extracted: boolean;
}

export async function openModelArchive(path: string): Promise<OpenedModel> {
  const st = statSync(path);
  if (st.isDirectory()) return { dir: modelRootOf(path), extracted: false };
  const dir = join(MODELS_ROOT, randomUUID().replace(/-/g, ''));
  mkdirSync(dir, { recursive: true });
  try {
    if (path.toLowerCase().endsWith('.mar') || path.toLowerCase().endsWith('.zip')) extractZip(path, dir);
    else await extractTarGz(path, dir);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    if (err instanceof TsError) throw err;
    throw tsError('TSS_ERR_ARCHIVE_INVALID', `Failed to open model archive ${basenameOf(path)}: ${(err as Error).message}`);
  }
  linkPackages(dir);
  return { dir, extracted: true };
}

/** A directory holding exactly one sub-directory (and no manifest) is that sub-directory's wrapper. */
function modelRootOf(dir: string): string {
  const entries = readdirSync(dir, { withFileTypes: true }).filter((e) => !e.name.startsWith('.'));
  const only = entries.length === 1 ? entries[0] : undefined;
  return only?.isDirectory() && only.name !== 'MAR-INF' ? join(dir, only.name) : dir;
}

/** Resolves an archive entry name inside `dir`, or refuses it. */
export function safeEntryPath(dir: string, name: string): string {
  const cleaned = name.replace(/\\/g, '/');
  if (isAbsolute(cleaned) || /^[a-zA-Z]:/.test(cleaned)) throw tsError('TSS_ERR_ARCHIVE_UNSAFE_ENTRY', name);
  const target = resolve(dir, normalize(cleaned));
  if (target !== dir && !target.startsWith(dir + sep)) throw tsError('TSS_ERR_ARCHIVE_UNSAFE_ENTRY', name);
  return target;
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

function extractZip(file: string, dir: string): void {
  const zip = new AdmZip(file);
  const entries = zip.getEntries();
  // Check every entry before writing any, so a refused archive leaves nothing behind.
  for (const entry of entries) {
    safeEntryPath(dir, entry.entryName);
    if (((entry.attr >>> 16) & S_IFMT) === S_IFLNK) throw tsError('TSS_ERR_ARCHIVE_UNSAFE_ENTRY', entry.entryName);
  }
  for (const entry of entries) {
    const target = safeEntryPath(dir, entry.entryName);
    if (entry.isDirectory) {
      mkdirSync(target, { recursive: true });
      continue;
    }
    mkdirSync(resolve(target, '..'), { recursive: true });
    zip.extractEntryTo(entry, resolve(target, '..'), false, true, false, basenameOf(target));
  }
}

async function extractTarGz(file: string, dir: string): Promise<void> {
  // First pass lists and checks every entry, second extracts: tar's own filter would silently
  // drop a bad entry, and a model with a file quietly missing is worse than a refusal.
  const tar = await import('tar'); // loaded on demand: most archives are zips, and idle memory counts
  const names: string[] = [];
  await tar.t({
    file,
    onReadEntry: (entry) => {
      names.push(entry.path);
      if (entry.type === 'SymbolicLink' || entry.type === 'Link') throw tsError('TSS_ERR_ARCHIVE_UNSAFE_ENTRY', entry.path);
    },
  });
  for (const name of names) safeEntryPath(dir, stripFirstComponent(name));
  await tar.x({ file, cwd: dir, strip: 1 });
}

function stripFirstComponent(name: string): string {
  return name.replace(/^\.?\/*[^/]*\/?/, '');
}

function basenameOf(p: string): string {
  return p.split(/[\\/]/).pop() ?? p;
}

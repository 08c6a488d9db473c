/**
 * @module archive/extract
 * Opens a model archive into a fresh model directory: a .mar (zip), a .tar.gz (first path
 * component stripped, as TorchServe does) or a directory used in place. An archive is untrusted
 * input, so every entry is read from its index and checked before one byte is written: a name
 * that would land outside the model directory (`../`, absolute), anything but plain files and
 * directories (links, devices), and the limits (entry count, unpacked size, compression ratio,
 * free disk). Unpacking streams on the thread pool, never on the event loop, and counts again what
 * really comes out, so a header that lies about its size is caught too. Files are written with
 * the process umask, never world-writable.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readdirSync, rmSync, statfsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from '../config/server-config.js';
import { TsError, tsError } from '../errors.js';
import { resolveInside } from './inside.js';

/** The parent of every extracted model directory, as TorchServe's `<tmpdir>/models`. */
export const MODELS_ROOT = join(tmpdir(), 'tsserve-models');

/** Entries smaller than this are not held to the ratio: a small, very regular file is harmless. */
const RATIO_FLOOR_BYTES = 1024 ** 2;

export interface OpenedModel {
  /** Where the model's files are. */
  readonly dir: string;
  /** True when `dir` was created by extraction and must be removed on unregister. */
  readonly extracted: boolean;
}

export async function openModelArchive(path: string, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS): Promise<OpenedModel> {
  const st = statSync(path);
  if (st.isDirectory()) return { dir: modelRootOf(path), extracted: false };
  // The server's PID names the directory, so a later start can tell a dead server's leftovers.
  const dir = join(MODELS_ROOT, `${process.pid}-${randomUUID().replace(/-/g, '')}`);
  mkdirSync(dir, { recursive: true });
  try {
    const name = basenameOf(path);
    if (/\.(mar|zip)$/i.test(path)) await extractZip(path, dir, new Budget(name, limits));
    else await extractTarGz(path, dir, new Budget(name, limits), st.size);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    if (err instanceof TsError) throw err;
    throw tsError('TSS_ERR_ARCHIVE_INVALID', `Failed to open model archive ${basenameOf(path)}: ${(err as Error).message}`);
  }
  return { dir, extracted: true };
}

/**
 * Removes the extraction directories of servers that are no longer running (an unclean stop
 * leaves them behind); a live server's, this one's included, are left alone.
 */
export function removeStaleExtractions(root: string = MODELS_ROOT): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const stale = names.filter((name) => {
    const pid = /^(\d+)-[0-9a-f]{32}$/.exec(name)?.[1];
    return pid !== undefined && !isAlive(Number(pid));
  });
  for (const name of stale) rmSync(join(root, name), { recursive: true, force: true });
  return stale;
}

/** Whether process `pid` runs (another user's included). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, but another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A directory holding exactly one sub-directory (and no manifest) is that sub-directory's wrapper. */
function modelRootOf(dir: string): string {
  const entries = readdirSync(dir, { withFileTypes: true }).filter((e) => !e.name.startsWith('.'));
  const only = entries.length === 1 ? entries[0] : undefined;
  return only?.isDirectory() && only.name !== 'MAR-INF' ? join(dir, only.name) : dir;
}

/** Resolves an archive entry name inside `dir`, or refuses it. */
function safeEntryPath(dir: string, name: string): string {
  const target = resolveInside(dir, name);
  if (target === undefined) throw tsError('TSS_ERR_ARCHIVE_UNSAFE_ENTRY', name);
  return target;
}

/** What one archive may take: its entries and unpacked bytes, counted from its index. */
class Budget {
  private entries = 0;
  private bytes = 0;
  private readonly archive: string;
  private readonly limits: ArchiveLimits;

  constructor(archive: string, limits: ArchiveLimits) {
    this.archive = archive;
    this.limits = limits;
  }

  /** One entry of the index, of `size` bytes unpacked; refuses past a limit. */
  add(size: number): void {
    if (++this.entries > this.limits.maxEntries) this.refuse(`has more than ${this.limits.maxEntries} entries (max_archive_entries)`);
    this.bytes += size;
    if (this.bytes > this.limits.maxUnpackedBytes) {
      this.refuse(`unpacks to more than ${formatBytes(this.limits.maxUnpackedBytes)} (max_archive_unpacked_size)`);
    }
  }

  /** `size` bytes unpacked from `packed`: a zip entry, or a whole .tar.gz, which compresses as one. */
  checkRatio(name: string, size: number, packed: number): void {
    if (size > RATIO_FLOOR_BYTES && size > packed * this.limits.maxCompressionRatio) {
      this.refuse(
        `${name} unpacks ${formatBytes(size)} from ${formatBytes(packed)}, more than ${this.limits.maxCompressionRatio} times (max_archive_compression_ratio)`,
      );
    }
  }

  /** After the index: the disk must hold what it unpacks to. */
  checkDisk(dir: string): void {
    const fs = statfsSync(dir);
    const free = fs.bavail * fs.bsize;
    if (this.bytes > free) this.refuse(`unpacks to ${formatBytes(this.bytes)}, but ${formatBytes(free)} are free in ${MODELS_ROOT}`);
  }

  get total(): number {
    return this.bytes;
  }

  refuse(why: string): never {
    throw tsError('TSS_ERR_ARCHIVE_INVALID', `Model archive ${this.archive} ${why}`);
  }
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

async function extractZip(file: string, dir: string, budget: Budget): Promise<void> {
  const zip = await openZip(file);
  try {
    const entries = await readIndex(zip);
    for (const entry of entries) {
      const name = entryName(entry);
      safeEntryPath(dir, name);
      const type = (entry.externalFileAttributes >>> 16) & S_IFMT;
      // Zips made on Windows (or by tools that set no mode) say 0: a plain file or directory.
      if (type !== 0 && type !== S_IFREG && type !== S_IFDIR) throw tsError('TSS_ERR_ARCHIVE_UNSAFE_ENTRY', name);
      if (entry.isEncrypted()) budget.refuse(`has an encrypted entry, ${name}`);
      budget.add(entry.uncompressedSize);
      budget.checkRatio(name, entry.uncompressedSize, entry.compressedSize);
    }
    budget.checkDisk(dir);
    const written = new Counter(budget);
    for (const entry of entries) {
      const name = entryName(entry);
      const target = safeEntryPath(dir, name);
      if (name.endsWith('/')) {
        mkdirSync(target, { recursive: true });
        continue;
      }
      mkdirSync(dirname(target), { recursive: true });
      // yauzl also fails an entry that inflates to more than its header says.
      await pipeline(await zip.openReadStreamPromise(entry), written.stream(), createWriteStream(target));
    }
  } finally {
    zip.close();
  }
}

/**
 * Names are read as bytes (decodeStrings: false) so that a name climbing out of the directory is
 * refused by the same check, with the same message, as in a .tar.gz; model archives name their
 * files in ASCII or UTF-8.
 */
function entryName(entry: Entry): string {
  return Buffer.from(entry.fileName as unknown as Uint8Array).toString('utf8');
}

function openZip(file: string): Promise<ZipFile> {
  return new Promise((resolveZip, reject) => {
    yauzl.open(file, { lazyEntries: true, autoClose: false, validateEntrySizes: true, decodeStrings: false }, (err, zip) =>
      err ? reject(err) : resolveZip(zip),
    );
  });
}

/** The central directory's entries; nothing is inflated yet. */
function readIndex(zip: ZipFile): Promise<Entry[]> {
  return new Promise((resolveIndex, reject) => {
    const entries: Entry[] = [];
    zip.on('entry', (entry: Entry) => {
      entries.push(entry);
      zip.readEntry();
    });
    zip.once('end', () => resolveIndex(entries));
    zip.once('error', reject);
    zip.readEntry();
  });
}

/** Counts what really comes out of every entry against the archive's unpacked-size limit. */
class Counter {
  private bytes = 0;
  private readonly budget: Budget;

  constructor(budget: Budget) {
    this.budget = budget;
  }

  stream(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding, done: TransformCallback) => {
        this.bytes += chunk.length;
        if (this.bytes > this.budget.total) {
          done(tsError('TSS_ERR_ARCHIVE_INVALID', 'Model archive unpacks to more than its index says'));
          return;
        }
        done(null, chunk);
      },
    });
  }
}

/** Entry types a model directory may hold; links, devices and FIFOs are refused. */
const TAR_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory']);

async function extractTarGz(file: string, dir: string, budget: Budget, packedSize: number): Promise<void> {
  const tar = await import('tar'); // loaded on demand: most archives are zips, and idle memory counts
  // First pass reads the headers and checks every entry, second extracts: tar's own filter would
  // silently drop a bad entry, and a model with a file quietly missing is worse than a refusal.
  // A throw inside tar's entry callback would escape every promise and end the process, so a
  // refusal is kept and the listing stopped instead.
  await new Promise<void>((resolveList, reject) => {
    const parser = tar.t({
      onReadEntry: (entry) => {
        try {
          if (!TAR_TYPES.has(entry.type)) throw tsError('TSS_ERR_ARCHIVE_UNSAFE_ENTRY', entry.path);
          // Both as written (an absolute name is an attack even if stripping would tame it) and
          // as it lands once its first component is stripped.
          safeEntryPath(dir, entry.path);
          safeEntryPath(dir, stripFirstComponent(entry.path));
          budget.add(entry.size ?? 0);
        } catch (err) {
          source.destroy();
          reject(err);
        }
        entry.resume();
      },
    });
    const source = createReadStream(file);
    source.once('error', reject);
    parser.once('error', reject);
    parser.once('end', () => resolveList());
    source.pipe(parser);
  });
  budget.checkRatio(basenameOf(file), budget.total, packedSize);
  budget.checkDisk(dir);
  // noChmod: files get the entry's mode through the process umask; owners are never set.
  await tar.x({ file, cwd: dir, strip: 1, noChmod: true, preserveOwner: false, filter: (_path, entry) => 'type' in entry && TAR_TYPES.has(entry.type) });
}

function stripFirstComponent(name: string): string {
  return name.replace(/^\.?\/*[^/]*\/?/, '');
}

function basenameOf(p: string): string {
  return p.split(/[\\/]/).pop() ?? p;
}

function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${n.toFixed(1)} ${units[i]}`;
}

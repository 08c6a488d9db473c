/**
 * @module archive/locate
 * The register API's `url` to a local archive path, in TorchServe's order (spec "URL resolution"):
 * empty and `..` refused; an http(s) or file URL must match allowed_urls in its normalised form
 * (percent-decoding, backslashes and dot segments resolved, and for a file, symlinks too: what is
 * matched is what is read); an http(s) URL is downloaded into the model store, a file outside the
 * store copied there, as TorchServe does, a file or directory inside it used in place. Anything
 * else is a path inside the model store, never outside it. Only regular files and directories are
 * read (not /dev/zero, a fifo, a socket), and every refusal that looked at the file system reads
 * the same whether the file exists or not, so a client cannot probe it. What a registration
 * records (marName) is the archive's path inside the store, which a restart finds again.
 */
import { constants, existsSync, realpathSync, statSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tsError } from '../errors.js';
import { copy, download, TargetExistsError, type TransferLimits } from './download.js';

export interface LocateOptions {
  readonly modelStore: string | undefined;
  readonly allowedUrls: readonly RegExp[];
  readonly maxDownloadBytes: number;
  readonly downloadTimeoutMs: number;
  /** The server's stop, which ends a download or copy under way. */
  readonly stop?: AbortSignal | undefined;
}

export interface Located {
  readonly path: string;
  /** The archive's path inside the model store, as snapshots record it. */
  readonly marName: string;
  /** True when the archive was downloaded into the store (and is removed on unregister). */
  readonly downloaded: boolean;
}

const URL_LIKE = /^(https?|file):\/\//i;

type Log = (message: string) => void;

/** `log` hears why a download or copy failed, which the client is not told. */
export async function locateArchive(url: string, opts: LocateOptions, log: Log = () => {}): Promise<Located> {
  const store = opts.modelStore;
  if (!store) throw tsError('TSS_ERR_ARCHIVE_NO_STORE');
  if (url === '') throw tsError('TSS_ERR_ARCHIVE_EMPTY_URL');
  if (url.includes('..')) throw tsError('TSS_ERR_ARCHIVE_RELATIVE_URL', url);
  if (/^file:/i.test(url)) return locateFile(url, resolve(store), opts, log);
  if (URL_LIKE.test(url)) return locateRemote(url, resolve(store), opts, log);
  const found = inStore(resolve(store, url), resolve(store));
  if (!found) throw tsError('TSS_ERR_ARCHIVE_NOT_FOUND', url);
  return found;
}

function isAllowed(url: string, opts: LocateOptions): boolean {
  return opts.allowedUrls.some((r) => r.test(url));
}

async function locateRemote(url: string, store: string, opts: LocateOptions, log: Log): Promise<Located> {
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (!parsed || !isAllowed(parsed.href, opts)) throw tsError('TSS_ERR_ARCHIVE_URL_NOT_ALLOWED', url);
  const name = basename(parsed.pathname);
  if (!name || name === '.') throw tsError('TSS_ERR_ARCHIVE_DOWNLOAD_FAILED', url);
  return intoStore(url, name, store, (target, limits) => download(parsed, target, (u) => isAllowed(u.href, opts), limits), opts, log);
}

/**
 * A file URL: the decoded path must be allowed before anything is looked at; after that, a path
 * that is missing, resolves (through symlinks) to somewhere not allowed, or is neither a regular
 * file nor a directory gets the one answer a missing archive gets.
 */
async function locateFile(url: string, store: string, opts: LocateOptions, log: Log): Promise<Located> {
  const path = decodedPath(url);
  if (path === undefined || !isAllowed(`file://${path}`, opts)) throw tsError('TSS_ERR_ARCHIVE_URL_NOT_ALLOWED', url);
  const notFound = tsError('TSS_ERR_ARCHIVE_NOT_FOUND', url);
  const real = realPath(path);
  if (real === undefined || !isAllowed(`file://${spelledFromStore(real, store)}`, opts)) throw notFound;
  const found = inStore(real, store);
  if (found) return found;
  if (storeRelative(real, store) !== undefined) throw notFound;
  const source = await openRegularFile(real);
  if (!source) throw notFound;
  try {
    return await intoStore(url, basename(path), store, (target, limits) => copy(source, target, limits), opts, log);
  } finally {
    await source.close();
  }
}

/** The absolute path a file URL names (`\` and `%2e%2e` are read by the URL parser), or undefined. */
function decodedPath(url: string): string | undefined {
  try {
    return resolve(fileURLToPath(new URL(url)));
  } catch {
    return undefined;
  }
}

function realPath(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** `real` inside the store's real path, spelled with the store as configured (which allowed_urls names). */
function spelledFromStore(real: string, store: string): string {
  const rel = storeRelative(real, store);
  return rel === undefined ? real : join(store, rel);
}

/** `real`'s path relative to the store's real path, or undefined when it is not inside. */
function storeRelative(real: string, store: string): string | undefined {
  const root = realPath(store);
  if (root === undefined) return undefined;
  const rel = relative(root, real);
  return rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel) ? undefined : rel;
}

/** `path` as an archive in the store: inside it once symlinks are resolved, and a regular file or a directory. */
function inStore(path: string, store: string): Located | undefined {
  const real = realPath(path);
  const rel = real === undefined ? undefined : storeRelative(real, store);
  if (real === undefined || rel === undefined) return undefined;
  const st = statSync(real, { throwIfNoEntry: false });
  if (!st?.isFile() && !st?.isDirectory()) return undefined;
  return { path: real, marName: rel.split(sep).join('/'), downloaded: false };
}

/** `path` opened for reading if it is a regular file; opened without blocking, so a fifo cannot hold it. */
async function openRegularFile(path: string): Promise<FileHandle | undefined> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch(() => undefined);
  if (handle && (await handle.stat()).isFile()) return handle;
  await handle?.close();
  return undefined;
}

type Transfer = (target: string, limits: TransferLimits) => Promise<void>;

/** Writes `name` into the store with `transfer`; the client hears only that it failed, the log why. */
async function intoStore(url: string, name: string, store: string, transfer: Transfer, opts: LocateOptions, log: Log): Promise<Located> {
  const target = join(store, name);
  if (existsSync(target)) throw tsError('TSS_ERR_ARCHIVE_EXISTS', name);
  try {
    await transfer(target, { maxBytes: opts.maxDownloadBytes, timeoutMs: opts.downloadTimeoutMs, stop: opts.stop });
  } catch (err) {
    if (err instanceof TargetExistsError) throw tsError('TSS_ERR_ARCHIVE_EXISTS', name);
    log(`Failed to download archive from: ${url}: ${(err as Error).message}`);
    throw tsError('TSS_ERR_ARCHIVE_DOWNLOAD_FAILED', url);
  }
  return { path: target, marName: name, downloaded: true };
}

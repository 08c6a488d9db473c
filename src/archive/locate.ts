/**
 * @module archive/locate
 * The register API's `url` to a local archive path, in TorchServe's order: empty and `..` refused,
 * an allowed URL downloaded into the model store (never elsewhere, with a size limit and a
 * timeout), a URL that is not allowed refused, anything else looked up in the model store.
 */
import { existsSync } from 'node:fs';
import { basename, isAbsolute, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tsError } from '../errors.js';
import { download as transfer, TargetExistsError } from './download.js';

export interface LocateOptions {
  readonly modelStore: string | undefined;
  readonly allowedUrls: readonly RegExp[];
  readonly maxDownloadBytes: number;
  readonly downloadTimeoutMs: number;
}

export interface Located {
  readonly path: string;
  /** The file name part, as snapshots record it. */
  readonly marName: string;
  /** True when the archive was downloaded into the store (and is removed on unregister). */
  readonly downloaded: boolean;
}

const URL_LIKE = /^(https?|file):\/\//i;

export async function locateArchive(url: string, opts: LocateOptions): Promise<Located> {
  const store = opts.modelStore;
  if (!store) throw tsError('TSS_ERR_ARCHIVE_NO_STORE');
  if (url === '') throw tsError('TSS_ERR_ARCHIVE_EMPTY_URL');
  if (url.includes('..')) throw tsError('TSS_ERR_ARCHIVE_RELATIVE_URL', url);
  if (URL_LIKE.test(url)) {
    if (!opts.allowedUrls.some((r) => r.test(url))) throw tsError('TSS_ERR_ARCHIVE_URL_NOT_ALLOWED', url);
    if (/^file:/i.test(url)) return existing(fileURLToPath(url), url);
    return download(url, store, opts);
  }
  const path = isAbsolute(url) ? url : resolve(store, url);
  if (!isAbsolute(url) && !path.startsWith(resolve(store) + sep)) throw tsError('TSS_ERR_ARCHIVE_RELATIVE_URL', url);
  return existing(path, url);
}

function existing(path: string, url: string): Located {
  if (!existsSync(path)) throw tsError('TSS_ERR_ARCHIVE_NOT_FOUND', url);
  return { path, marName: basename(path), downloaded: false };
}

async function download(url: string, store: string, opts: LocateOptions): Promise<Located> {
  const name = basename(new URL(url).pathname);
  if (!name || name === '.') throw tsError('TSS_ERR_ARCHIVE_DOWNLOAD_FAILED', url);
  const target = join(store, name);
  if (existsSync(target)) throw tsError('TSS_ERR_ARCHIVE_EXISTS', name);
  const allowed = (u: URL): boolean => opts.allowedUrls.some((r) => r.test(u.href));
  try {
    await transfer(new URL(url), target, allowed, { maxBytes: opts.maxDownloadBytes, timeoutMs: opts.downloadTimeoutMs });
  } catch (err) {
    if (err instanceof TargetExistsError) throw tsError('TSS_ERR_ARCHIVE_EXISTS', name);
    throw tsError('TSS_ERR_ARCHIVE_DOWNLOAD_FAILED', url);
  }
  return { path: target, marName: name, downloaded: true };
}

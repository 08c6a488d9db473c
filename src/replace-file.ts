/**
 * @module replace-file
 * A file replaced whole: written beside its path and renamed onto it, so that a reader (a user's
 * script waiting for key_file.json, `tsserve --stop` reading the pid file, a server loading a .mar)
 * sees the old content or the new, never a file cut short by a crash, a full disk or its own
 * timing.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';

/**
 * The name the new content is written under first: this process's own, so that two writers (two
 * `tsserve --start` in one folder) never share one, nor a file someone else put there.
 */
function besidePath(path: string): string {
  return `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
}

/**
 * Replaces `path` with what `write` writes to the path it is given, once `write` has returned;
 * if it throws, `path` is as it was. A directory at `path` is removed only then (rename cannot
 * replace one that has files).
 */
export function replacePathSync(path: string, write: (beside: string) => void): void {
  const beside = besidePath(path);
  try {
    write(beside);
    if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) rmSync(path, { recursive: true, force: true });
    renameSync(beside, path);
  } catch (err) {
    rmSync(beside, { recursive: true, force: true });
    throw err;
  }
}

/** Replaces `path` with `data` (given `mode`, whatever the umask, when set). */
export function replaceFileSync(path: string, data: string | Uint8Array, mode?: number): void {
  replacePathSync(path, (beside) => {
    // `wx`: a file made now, never one that appeared at that name (nor a link's target).
    writeFileSync(beside, data, { flag: 'wx', ...(mode === undefined ? {} : { mode }) });
    if (mode !== undefined) chmodSync(beside, mode);
  });
}

/** replaceFileSync, off the event loop. */
export async function replaceFile(path: string, data: string | Uint8Array): Promise<void> {
  const beside = besidePath(path);
  try {
    await writeFile(beside, data, { flag: 'wx' });
    await rename(beside, path);
  } catch (err) {
    await rm(beside, { force: true });
    throw err;
  }
}

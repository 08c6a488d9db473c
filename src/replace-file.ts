/**
 * @module replace-file
 * A file replaced whole: written beside its path and renamed onto it, so that a reader (a user's
 * script waiting for key_file.json, `tsserve --stop` reading the pid file, a server loading a .mar)
 * sees the old content or the new, never a file cut short by a crash, a full disk or its own
 * timing.
 */
import { chmodSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';

/**
 * Replaces `path` with what `write` writes to the path it is given, once `write` has returned;
 * if it throws, `path` is as it was. A directory at `path` is removed only then (rename cannot
 * replace one that has files).
 */
export function replacePathSync(path: string, write: (beside: string) => void): void {
  const beside = `${path}.tmp`;
  try {
    // One left by a crash, or planted (a symbolic link would take the write elsewhere).
    rmSync(beside, { recursive: true, force: true });
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
    // `wx`: a file made now, never one that appeared at that name since (nor a link's target).
    writeFileSync(beside, data, { flag: 'wx', ...(mode === undefined ? {} : { mode }) });
    if (mode !== undefined) chmodSync(beside, mode);
  });
}

/** replaceFileSync, off the event loop. */
export async function replaceFile(path: string, data: string | Uint8Array): Promise<void> {
  const beside = `${path}.tmp`;
  try {
    await rm(beside, { force: true });
    await writeFile(beside, data, { flag: 'wx' });
    await rename(beside, path);
  } catch (err) {
    await rm(beside, { force: true });
    throw err;
  }
}

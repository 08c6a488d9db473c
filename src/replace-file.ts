/**
 * @module replace-file
 * A file replaced whole: written beside its path and renamed onto it, so that a reader (a user's
 * script waiting for key_file.json, `tsserve --stop` reading the pid file, a server loading a .mar)
 * sees the old content or the new, never a file cut short by a crash, a full disk or its own
 * timing.
 */
import { chmodSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';

/** Replaces `path` with `data` (given `mode`, whatever the umask, when set). */
export function replaceFileSync(path: string, data: string | Uint8Array, mode?: number): void {
  const beside = `${path}.tmp`;
  try {
    writeFileSync(beside, data, mode === undefined ? undefined : { mode });
    if (mode !== undefined) chmodSync(beside, mode);
    renameSync(beside, path);
  } catch (err) {
    rmSync(beside, { force: true });
    throw err;
  }
}

/** replaceFileSync, off the event loop. */
export async function replaceFile(path: string, data: string | Uint8Array): Promise<void> {
  const beside = `${path}.tmp`;
  try {
    await writeFile(beside, data);
    await rename(beside, path);
  } catch (err) {
    await rm(beside, { force: true });
    throw err;
  }
}

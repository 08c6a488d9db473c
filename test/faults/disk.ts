// A small disk for the fault tests: a tmpfs of a few hundred KB mounted in a temp folder, filled
// until the kernel answers ENOSPC and freed again, and always unmounted when the test ends. It
// needs root (CI runs as root): without it the mount fails and so does the test, loudly, never
// skipping what it was written to show.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { TestServer } from '../helpers.js';

export interface SmallDisk {
  /** The mount point. */
  readonly dir: string;
  /** Writes a filler file until the disk refuses even one byte, leaving `keepFree` bytes (4 KB pages) unused. */
  fill(keepFree?: number): void;
  /** Makes empty files until the disk refuses another inode, then removes `keepFree` of them: room in bytes, none for more files. */
  fillInodes(keepFree: number): void;
  /** Removes the fillers. */
  free(): void;
}

/** A tmpfs of `sizeKb`, of at most `inodes` files and folders (its root one of them) when given. */
export function smallDisk(t: Test, sizeKb: number, inodes?: number): SmallDisk {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-disk-'));
  const options = [`size=${sizeKb}k`, ...(inodes === undefined ? [] : [`nr_inodes=${inodes}`])].join(',');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    rmdirSync(dir);
    throw new Error(`mounting a ${sizeKb} KB tmpfs failed (these tests need root, as CI has): ${(err as Error).message}`);
  }
  t.teardown(() => {
    // Lazy: a server process the test is still stopping may hold a file open there.
    execFileSync('umount', ['-l', dir]);
    rmdirSync(dir);
  });
  const filler = join(dir, 'filler');
  const inodeFillers = join(dir, 'inode-fillers');
  return {
    dir,
    fill(keepFree = 0) {
      const fd = openSync(filler, 'a');
      try {
        for (let piece = 64 * 1024; piece >= 1; piece = Math.floor(piece / 2)) {
          const bytes = Buffer.alloc(piece, 0x2e);
          while (tryWrite(fd, bytes));
        }
      } finally {
        closeSync(fd);
      }
      if (keepFree > 0) execFileSync('truncate', ['-s', `-${keepFree}`, filler]);
    },
    fillInodes(keepFree) {
      mkdirSync(inodeFillers, { recursive: true });
      let made = 0;
      while (tryCreate(join(inodeFillers, String(made)))) made++;
      if (made < keepFree) throw new Error(`only ${made} inodes were free on ${dir}, fewer than the ${keepFree} to keep free`);
      for (let i = 1; i <= keepFree; i++) rmSync(join(inodeFillers, String(made - i)));
    },
    free() {
      rmSync(filler, { force: true });
      rmSync(inodeFillers, { recursive: true, force: true });
    },
  };
}

function tryCreate(path: string): boolean {
  try {
    closeSync(openSync(path, 'wx'));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') return false;
    throw err;
  }
}

function tryWrite(fd: number, bytes: Buffer): boolean {
  try {
    return writeSync(fd, bytes) === bytes.length;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') return false;
    throw err;
  }
}

/** A server these tests started as a child process (`tsserve --start`), as survived() takes it: by its REST URLs. */
export function childServer(urls: { inference: string; management: string; metrics: string }): Pick<TestServer, 'urls'> {
  return { urls: { ...urls, grpcInference: '', grpcManagement: '', kserve: undefined, grpcKserve: undefined } };
}

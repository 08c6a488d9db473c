/**
 * @module host-limits
 * What Linux says of this machine and its container, read when asked: `Name: N kB` lines of /proc
 * files (MemAvailable, a process's VmRSS or Pss) and the cgroup's CPU quota and memory limit (v2, or
 * v1's cpu and memory controllers). The system metrics, the scaler's machine and the memory budget
 * all read them here. Imports nothing of ours.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/** A file's text; undefined where it cannot be read (not Linux, no such cgroup, a process gone). */
function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

/** `<field>: <n> kB` from a /proc file, in bytes; undefined where the file or the line is missing. */
export function procKilobytes(file: string, field: string): number | undefined {
  return kilobytesIn(readText(file), field);
}

/** procKilobytes read off the event loop: for files the kernel takes long to write (smaps_rollup walks every page). */
export async function procKilobytesLater(file: string, field: string): Promise<number | undefined> {
  return kilobytesIn(await readFile(file, 'latin1').catch(() => undefined), field);
}

function kilobytesIn(text: string | undefined, field: string): number | undefined {
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text ?? '')?.[1];
  return kb === undefined ? undefined : Number(kb) * 1024;
}

/** Cores the cgroup's quota grants (cgroup v2 cpu.max, or v1 cfs quota/period); undefined: no quota. */
export function cgroupCpuQuota(read: (path: string) => string | undefined = readText): number | undefined {
  const v2 = read('/sys/fs/cgroup/cpu.max')?.trim().split(/\s+/);
  if (v2) return v2[0] === 'max' ? undefined : ratio(v2[0], v2[1]);
  const quota = read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')?.trim();
  if (quota === undefined || quota.startsWith('-')) return undefined;
  return ratio(quota, read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')?.trim());
}

function ratio(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota);
  const p = Number(period);
  return q > 0 && p > 0 ? q / p : undefined;
}

/**
 * The cgroup's memory limit and what it holds now (v2 memory.max/current, or v1
 * limit_in_bytes/usage_in_bytes); undefined without a limit (v1 writes "no limit" as a huge number).
 */
export function cgroupMemoryLimit(read: (path: string) => string | undefined = readText): { max: number; used: number } | undefined {
  const v2 = read('/sys/fs/cgroup/memory.max')?.trim();
  const [maxText, usedText] =
    v2 !== undefined
      ? [v2, read('/sys/fs/cgroup/memory.current')]
      : [read('/sys/fs/cgroup/memory/memory.limit_in_bytes'), read('/sys/fs/cgroup/memory/memory.usage_in_bytes')];
  const max = Number(maxText?.trim());
  if (!Number.isFinite(max) || max <= 0 || max >= 2 ** 60) return undefined;
  return { max, used: Number(usedText?.trim()) || 0 };
}

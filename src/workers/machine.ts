/**
 * @module workers/machine
 * What the machine allows the worker pools, as the scaler (workers/scaler.ts) asks it: the cores
 * (Node's availableParallelism, cut to the cgroup's CPU quota when one is set), the memory still
 * free (the kernel's MemAvailable, cut to what the cgroup's limit leaves), a worker's resident
 * size, and every pool's workers together, for the cores are the machine's and not one model's.
 * Read from /proc and /sys/fs/cgroup (v2, or v1's cpu and memory controllers) when asked: a
 * scaler asks once per decision, not per request.
 */
import { availableParallelism, freemem, totalmem } from 'node:os';
import { cgroupCpuQuota, cgroupMemoryLimit, procKilobytes } from '../host-limits.js';

/** A pool as the census counts it. */
export interface Counted {
  readonly size: number;
}

export interface Machine {
  /** Cores the server's processes may use together. */
  cores(): number;
  /** Bytes that more processes may still take, after the headroom the machine keeps. */
  spareMemory(): number;
  /** A process's resident bytes; 0 when it cannot be read. */
  residentBytes(pid: number): number;
  /** Workers of every pool enlisted, together. */
  workers(): number;
  enlist(pool: Counted): void;
  dismiss(pool: Counted): void;
}

/**
 * The share of memory no scale-up takes: the server, the page cache and whatever else runs need
 * some, and a worker's size grows after its first batches.
 */
const MEMORY_HEADROOM = 0.1;

/** The host's limits, read as they are now; every pool of the process shares one census. */
export class HostMachine implements Machine {
  private readonly pools = new Set<Counted>();

  cores(): number {
    const quota = cgroupCpuQuota();
    const cores = availableParallelism();
    return quota === undefined ? cores : Math.max(1, Math.min(cores, Math.ceil(quota)));
  }

  spareMemory(): number {
    const limit = cgroupMemoryLimit();
    const total = limit === undefined ? totalmem() : Math.min(totalmem(), limit.max);
    const available = Math.min(procKilobytes('/proc/meminfo', 'MemAvailable') ?? freemem(), limit ? limit.max - limit.used : Infinity);
    return Math.max(0, available - MEMORY_HEADROOM * total);
  }

  residentBytes(pid: number): number {
    return procKilobytes(`/proc/${pid}/status`, 'VmRSS') ?? 0;
  }

  workers(): number {
    let n = 0;
    for (const pool of this.pools) n += pool.size;
    return n;
  }

  enlist(pool: Counted): void {
    this.pools.add(pool);
  }

  dismiss(pool: Counted): void {
    this.pools.delete(pool);
  }
}

/** The process's one machine: the pools that are not given another (tests give their own). */
export const HOST = new HostMachine();

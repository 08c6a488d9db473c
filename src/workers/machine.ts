/**
 * @module workers/machine
 * What the machine allows the worker pools, as the scaler (workers/scaler.ts) asks it: the cores
 * (Node's availableParallelism, cut to the cgroup's CPU quota when one is set), the memory still
 * free (the kernel's MemAvailable, cut to what the cgroup's limit leaves), a worker's resident
 * size, and every pool's workers together, for the cores are the machine's and not one model's.
 * Read from /proc and /sys/fs/cgroup (v2, or v1's cpu and memory controllers), each reading used
 * again for a second (READING_FRESH_MS): scalers ask at their decisions and at each describe.
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
/** Readings kept before the stale ones (processes that ended) are dropped: a few per worker process. */
const MAX_READINGS = 4096;

/**
 * How long a reading of the machine is used again: describe asks each model's scaler for its
 * limits (cores, spare memory, its workers' resident size), and every scaler asks at its decisions;
 * read at each, /proc, the cgroup files and the CPU list took 538 ms of the front end's event loop
 * in 20 s of bench/many-models.mjs's phase C (a describe before each request, 1,000 models). The
 * cores and the cgroup's limits change with the container's settings, the spare memory as processes
 * start and grow: a second late is within what the scaler's headroom allows for (MEMORY_HEADROOM).
 */
export const READING_FRESH_MS = 1000;

/** What the machine's limits are read from: Linux's files here, a test's own elsewhere. */
export interface MachineSources {
  cores(): number;
  spareMemory(): number;
  residentBytes(pid: number): number;
}

/** The host's files and Node's view of the CPUs, read when asked. */
export const HOST_SOURCES: MachineSources = {
  cores() {
    const quota = cgroupCpuQuota();
    const cores = availableParallelism();
    return quota === undefined ? cores : Math.max(1, Math.min(cores, Math.ceil(quota)));
  },
  spareMemory() {
    const limit = cgroupMemoryLimit();
    const total = limit === undefined ? totalmem() : Math.min(totalmem(), limit.max);
    const available = Math.min(procKilobytes('/proc/meminfo', 'MemAvailable') ?? freemem(), limit ? limit.max - limit.used : Infinity);
    return Math.max(0, available - MEMORY_HEADROOM * total);
  },
  residentBytes(pid) {
    return procKilobytes(`/proc/${pid}/status`, 'VmRSS') ?? 0;
  },
};

interface Reading {
  readonly value: number;
  readonly at: number;
}

/** The host's limits, each reading used for READING_FRESH_MS; every pool of the process shares one census. */
export class HostMachine implements Machine {
  private readonly pools = new Set<Counted>();
  private readonly sources: MachineSources;
  private readonly now: () => number;
  private readonly readings = new Map<string, Reading>();

  constructor(sources: MachineSources = HOST_SOURCES, now: () => number = () => performance.now()) {
    this.sources = sources;
    this.now = now;
  }

  cores(): number {
    return this.fresh('cores', () => this.sources.cores());
  }

  spareMemory(): number {
    return this.fresh('spare', () => this.sources.spareMemory());
  }

  residentBytes(pid: number): number {
    return this.fresh(`rss ${pid}`, () => this.sources.residentBytes(pid));
  }

  /** The reading under `key`, read again once READING_FRESH_MS old; stale ones of ended processes are dropped as it grows. */
  private fresh(key: string, read: () => number): number {
    const now = this.now();
    const last = this.readings.get(key);
    if (last && now - last.at < READING_FRESH_MS) return last.value;
    if (!last && this.readings.size >= MAX_READINGS) this.dropStale(now);
    const value = read();
    this.readings.set(key, { value, at: now });
    return value;
  }

  private dropStale(now: number): void {
    for (const [key, reading] of this.readings) if (now - reading.at >= READING_FRESH_MS) this.readings.delete(key);
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

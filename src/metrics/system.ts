/**
 * @module metrics/system
 * TorchServe's system-metrics collector: every `metric_time_interval` seconds (60) the host's CPU,
 * memory and root-disk use, as the gauges of its default metrics.yaml (Level "Host"), and each
 * worker's resident memory, which describe answers as `memoryUsage`. Off with
 * `disable_system_metrics=true`. Read from the kernel (/proc, statfs), no child process:
 * TorchServe runs a Python script for this each time.
 */
import { statfsSync } from 'node:fs';
import { cpus, freemem, totalmem } from 'node:os';
import { procKilobytes } from '../host-limits.js';

export interface SystemSample {
  readonly CPUUtilization: number;
  readonly MemoryUsed: number;
  readonly MemoryAvailable: number;
  readonly MemoryUtilization: number;
  readonly DiskUsage: number;
  readonly DiskUtilization: number;
  readonly DiskAvailable: number;
}

export interface SystemMetricsDeps {
  readonly intervalSec: number;
  readonly publish: (sample: SystemSample) => void;
  /** The live workers, for their resident memory. */
  readonly workers: () => Iterable<{ readonly pid: number; memoryUsage: number }>;
}

/** Collects once now, then every interval; the returned function stops it. */
export function startSystemMetrics(deps: SystemMetricsDeps): () => void {
  let previousCpu = cpuTimes();
  const collect = (): void => {
    const cpu = cpuTimes();
    deps.publish({ CPUUtilization: busyPercent(previousCpu, cpu), ...memory(), ...disk('/') });
    previousCpu = cpu;
    for (const w of deps.workers()) if (w.pid > 0) w.memoryUsage = residentBytes(w.pid);
  };
  collect();
  const timer = setInterval(collect, Math.max(1, deps.intervalSec) * 1000);
  timer.unref();
  return () => clearInterval(timer);
}

interface CpuTimes {
  readonly busy: number;
  readonly total: number;
}

function cpuTimes(): CpuTimes {
  let busy = 0;
  let total = 0;
  for (const { times } of cpus()) {
    const all = times.user + times.nice + times.sys + times.idle + times.irq;
    busy += all - times.idle;
    total += all;
  }
  return { busy, total };
}

/** Busy share of all cores since `before`; the first sample, taken at start, counts since boot. */
function busyPercent(before: CpuTimes, after: CpuTimes): number {
  const total = after.total - before.total;
  const since = total > 0 ? { busy: after.busy - before.busy, total } : after;
  return round1(since.total > 0 ? (100 * since.busy) / since.total : 0);
}

/** Megabytes; "available" is the kernel's MemAvailable (what can be had without swapping). */
function memory(): Pick<SystemSample, 'MemoryUsed' | 'MemoryAvailable' | 'MemoryUtilization'> {
  const total = totalmem();
  const available = procKilobytes('/proc/meminfo', 'MemAvailable') ?? freemem();
  const used = total - available;
  return { MemoryUsed: round1(used / 2 ** 20), MemoryAvailable: round1(available / 2 ** 20), MemoryUtilization: round1((100 * used) / total) };
}

/** Gigabytes of the filesystem at `path`; utilisation as `df` counts it (reserved blocks excluded). */
function disk(path: string): Pick<SystemSample, 'DiskUsage' | 'DiskUtilization' | 'DiskAvailable'> {
  try {
    const s = statfsSync(path);
    const used = (s.blocks - s.bfree) * s.bsize;
    const available = s.bavail * s.bsize;
    return { DiskUsage: round1(used / 2 ** 30), DiskAvailable: round1(available / 2 ** 30), DiskUtilization: round1((100 * used) / (used + available || 1)) };
  } catch {
    return { DiskUsage: 0, DiskUtilization: 0, DiskAvailable: 0 };
  }
}

/** A process's resident set in bytes; 0 where /proc cannot say (the process is gone, not Linux). */
function residentBytes(pid: number): number {
  return procKilobytes(`/proc/${pid}/status`, 'VmRSS') ?? 0;
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

// The machine's limits as the cgroup files say them (v2, v1, none), read through a stand-in for the files.
import t from 'tap';
import { cgroupCpuQuota, cgroupMemoryLimit } from '../host-limits.js';
import { HostMachine, READING_FRESH_MS } from './machine.js';

const files =
  (content: Record<string, string>) =>
  (path: string): string | undefined =>
    content[path];

t.test('the CPU quota: cgroup v2 cpu.max, v1 cfs quota over period, none', async (t) => {
  t.equal(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' })), 1.5);
  t.equal(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), undefined, 'v2 without a quota');
  t.equal(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '200000\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), 2);
  t.equal(
    cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })),
    undefined,
    'v1 without',
  );
  t.equal(cgroupCpuQuota(files({})), undefined, 'no cgroup files');
});

t.test('the memory limit: cgroup v2 memory.max and current, v1 limit and usage, none', async (t) => {
  t.same(cgroupMemoryLimit(files({ '/sys/fs/cgroup/memory.max': '1073741824\n', '/sys/fs/cgroup/memory.current': '536870912\n' })), {
    max: 1073741824,
    used: 536870912,
  });
  t.equal(cgroupMemoryLimit(files({ '/sys/fs/cgroup/memory.max': 'max\n', '/sys/fs/cgroup/memory.current': '1\n' })), undefined);
  t.same(cgroupMemoryLimit(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '2147483648\n', '/sys/fs/cgroup/memory/memory.usage_in_bytes': '1000\n' })), {
    max: 2147483648,
    used: 1000,
  });
  t.equal(cgroupMemoryLimit(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n' })), undefined, "v1's no limit");
});

t.test('the host: cores, spare memory and its own resident size are read; pools are counted together', async (t) => {
  const host = new HostMachine();
  t.ok(host.cores() >= 1);
  t.ok(host.spareMemory() >= 0);
  t.ok(host.residentBytes(process.pid) > 0, 'this process has a resident size');
  t.equal(host.residentBytes(-1), 0, 'a process that is not there has none');
  const a = { size: 2 };
  const b = { size: 3 };
  host.enlist(a);
  host.enlist(b);
  t.equal(host.workers(), 5);
  host.dismiss(a);
  t.equal(host.workers(), 3);
});

t.test('each reading is used again for READING_FRESH_MS, then read anew; each process its own', async (t) => {
  const reads = { cores: 0, spare: 0, rss: 0 };
  let clock = 0;
  const host = new HostMachine(
    {
      cores: () => ++reads.cores,
      spareMemory: () => 1000 * ++reads.spare,
      residentBytes: (pid) => pid * 10 + ++reads.rss,
    },
    () => clock,
  );
  t.same([host.cores(), host.spareMemory(), host.residentBytes(1)], [1, 1000, 11], 'first readings');
  clock += READING_FRESH_MS - 1;
  t.same([host.cores(), host.spareMemory(), host.residentBytes(1)], [1, 1000, 11], 'within READING_FRESH_MS: the same readings');
  t.equal(host.residentBytes(2), 22, 'another process: read');
  t.same(reads, { cores: 1, spare: 1, rss: 2 }, 'nothing read again');
  clock += 1;
  t.same([host.cores(), host.spareMemory(), host.residentBytes(1)], [2, 2000, 13], 'READING_FRESH_MS later: read anew');
});

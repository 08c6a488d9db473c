// A shared worker host that yields the CPU to busy models' hosts (workers/worker-host.ts's
// yieldToBusyHosts, asked by workers/shared-hosts.ts when it takes a load beside them), on a real
// host process: every thread of it is made nice 19, not only its main thread, which is all that
// setpriority on its pid changes on Linux (a model's session runs on threads of the process).
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import t from 'tap';
import { WorkerHost } from '../dist/src/workers/worker-host.js';

/** Each thread's niceness, from /proc/<pid>/task/<tid>/stat (field 19; the name, in parentheses, may hold spaces). */
function threadNiceness(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

t.test(
  'yieldToBusyHosts makes every thread of the host nice 19, once',
  { skip: process.platform !== 'linux' && 'Linux keeps niceness per thread' },
  async (t) => {
    const host = new WorkerHost({
      intraOpThreads: 1,
      wideIntraOpThreads: undefined,
      nice: 0,
      permissionDir: undefined,
      env: process.env,
      shared: true,
      maxResponseSize: 1024 * 1024,
      onOutput: () => {},
    });
    t.teardown(() => host.kill());
    // Node's own threads (V8's platform workers and others) start with the process: wait for them.
    for (let i = 0; i < 100 && threadNiceness(host.pid).length < 3; i++) await new Promise((r) => setTimeout(r, 50));
    const before = threadNiceness(host.pid);
    t.ok(before.length >= 3, `${before.length} threads`);
    t.ok(
      before.every((n) => n === getPriority()),
      'they start at the server niceness (nice 0 added)',
    );
    host.yieldToBusyHosts();
    t.same(new Set(threadNiceness(host.pid)), new Set([19]), 'every thread is nice 19');
    host.yieldToBusyHosts();
    t.same(new Set(threadNiceness(host.pid)), new Set([19]), 'asked again: nothing more to do');
  },
);

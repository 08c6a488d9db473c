// What the bench scripts share: a free 127.0.0.1 port, and the memory of a process tree.
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** RSS of a process and all its descendants, in MB (Linux /proc). */
export function treeRssMb(pid) {
  return treeSumMb(pid, 'status', /VmRSS:\s+(\d+)/);
}

/**
 * PSS of the same tree: every shared page (the node binary, libraries) counted once across the
 * processes instead of once per process, which is what the tree really takes from the machine.
 */
export function treePssMb(pid) {
  return treeSumMb(pid, 'smaps_rollup', /Pss:\s+(\d+)/);
}

function treeSumMb(pid, file, field) {
  const children = new Map();
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch { /* the process ended meanwhile */ }
  }
  let kb = 0;
  for (const stack = [pid]; stack.length > 0;) {
    const p = stack.pop();
    try {
      kb += Number(field.exec(readFileSync(`/proc/${p}/${file}`, 'utf8'))?.[1] ?? 0);
    } catch { /* ended */ }
    stack.push(...(children.get(p) ?? []));
  }
  return Math.round(kb / 1024);
}

export function median(values) {
  return values.length === 0 ? undefined : [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

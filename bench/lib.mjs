// What the bench scripts share: a free 127.0.0.1 port, the memory of a process tree, a
// tsserve started as a user starts it, another revision's code built, an OTLP receiver.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

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

/** Every process's children, by parent PID (Linux /proc). */
function childrenByParent() {
  const children = new Map();
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const ppid = Number(stat(entry)[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      /* the process ended meanwhile */
    }
  }
  return children;
}

/** The fields of /proc/<pid>/stat after the command's name: state, ppid, ... */
function stat(pid) {
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
}

export function childPids(pid) {
  return childrenByParent().get(pid) ?? [];
}

/** CPU seconds (user and system) a process has used so far; 0 once it has ended. */
export function cpuSeconds(pid) {
  try {
    const fields = stat(pid);
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/**
 * Minor page faults a process has taken so far (pages it touched for the first time: a heap that
 * grows, or pages handed back and touched again); 0 once it has ended.
 */
export function minorFaults(pid) {
  try {
    return Number(stat(pid)[7]);
  } catch {
    return 0;
  }
}

function treeSumMb(pid, file, field) {
  const children = childrenByParent();
  let kb = 0;
  for (const stack = [pid]; stack.length > 0; ) {
    const p = stack.pop();
    try {
      kb += Number(field.exec(readFileSync(`/proc/${p}/${file}`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* ended */
    }
    stack.push(...(children.get(p) ?? []));
  }
  return Math.round(kb / 1024);
}

export function median(values) {
  return values.length === 0 ? undefined : [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

/**
 * A tsserve run as a user runs it, from a temporary folder of its own: config.properties on free
 * 127.0.0.1 ports (plus `extraLines`), a model-store/ to fill, `tsserve --start`/`--stop` from
 * that folder (its TMPDIR holds the PID file, so `pid()` finds the server), and `remove()`.
 * `root`: the checkout whose bin/tsserve.js runs (this one by default); `env`: variables added to
 * the server's environment.
 */
export async function userServer(prefix, extraLines = [], { root = new URL('..', import.meta.url).pathname, env: extraEnv = {} } = {}) {
  const run = promisify(execFile);
  const tsserve = join(root, 'bin', 'tsserve.js');
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env = { ...process.env, ...extraEnv, TMPDIR: dir };
  const store = join(dir, 'model-store');
  mkdirSync(store);
  const [inference, management, metrics, grpcInference, grpcManagement] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  writeFileSync(
    join(dir, 'config.properties'),
    [
      `inference_address=http://127.0.0.1:${inference}`,
      `management_address=http://127.0.0.1:${management}`,
      `metrics_address=http://127.0.0.1:${metrics}`,
      `grpc_inference_port=${grpcInference}`,
      `grpc_management_port=${grpcManagement}`,
      ...extraLines,
    ].join('\n') + '\n',
  );
  return {
    dir,
    store,
    inference: `http://127.0.0.1:${inference}`,
    management: `http://127.0.0.1:${management}`,
    metrics: `http://127.0.0.1:${metrics}`,
    start: (args) => run(process.execPath, [tsserve, '--start', '--model-store', 'model-store', '--disable-token-auth', '--ncs', ...args], { cwd: dir, env }),
    stop: () => run(process.execPath, [tsserve, '--stop'], { cwd: dir, env }).catch(() => undefined),
    /** The running server's PID, from the PID file `tsserve --start` wrote. */
    pid: () =>
      Number(
        readFileSync(
          join(
            dir,
            readdirSync(dir).find((f) => f.startsWith('.tsserve-') && f.endsWith('.pid')),
          ),
          'utf8',
        ).split('\n')[0],
      ),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Calls `send(msSinceStart)` `rate` times a second for `seconds`, each at its scheduled time
 * whatever earlier calls do (the open loop); resolves once the last is made with what they
 * returned, when it began, and how far behind schedule (ms) a call fell at worst.
 */
export async function atFixedRate(rate, seconds, send) {
  const began = performance.now();
  const calls = [];
  let late = 0;
  for (let i = 0; i < Math.round(rate * seconds); i++) {
    const wait = began + (i * 1000) / rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    else late = Math.max(late, -wait);
    calls.push(send(performance.now() - began));
  }
  return { began, calls, late };
}

export function sorted(values) {
  return [...values].sort((a, b) => a - b);
}

/** The `p`th percentile of `ascending` values; 0 when there are none. */
export function percentile(ascending, p) {
  return ascending.length === 0 ? 0 : ascending[Math.min(ascending.length - 1, Math.floor((p / 100) * ascending.length))];
}

/** The code of `rev` in the checkout at `root`, built with tsc beside its node_modules, in a temporary folder. */
export function checkoutOf(root, rev) {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-bench-base-'));
  execFileSync('sh', ['-c', `git -C "${root}" archive "${rev}" | tar -x -C "${dir}"`]);
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], { stdio: 'inherit' });
  return dir;
}

/** An OTLP/HTTP receiver on 127.0.0.1 that takes every export and counts them and their bytes. */
export async function otlpReceiver() {
  const counts = { exports: 0, bytes: 0 };
  const server = createHttpServer((req, res) => {
    req.on('data', (c) => {
      counts.bytes += c.length;
    });
    req.on('end', () => {
      counts.exports++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}/v1/traces`, counts, close: () => server.close() };
}

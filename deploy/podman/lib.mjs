// What the container check's parts share: podman as this machine runs it, the tally of checks, and
// small HTTP helpers. Traffic goes to 127.0.0.1 only.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PODMAN = ['--runtime', 'runc'];
export const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4000:4000'];

// `podman kube play` takes no --runtime or --ulimit: the same two settings, as a containers.conf
// that every podman command of the check reads.
const conf = join(mkdtempSync(join(tmpdir(), 'tsserve-podman-')), 'containers.conf');
writeFileSync(conf, '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4000:4000"]\n[engine]\nruntime = "runc"\n');
process.env.CONTAINERS_CONF = conf;

export const results = [];
export const facts = {};

export function podman(...argv) {
  return execFileSync('podman', [...PODMAN, ...argv], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** podman, without throwing: its exit status and output. */
export function podmanTry(...argv) {
  const run = spawnSync('podman', [...PODMAN, ...argv], { encoding: 'utf8' });
  return { status: run.status, out: `${run.stdout}${run.stderr}`.trim() };
}

/** podman in the background: resolves when it ends, with the milliseconds it took. */
export function podmanTimed(...argv) {
  const started = Date.now();
  return new Promise((resolve) => execFile('podman', [...PODMAN, ...argv], () => resolve(Date.now() - started)));
}

export function check(what, ok, detail = '') {
  results.push({ what, ok });
  console.log(`${ok ? 'ok    ' : 'FAILED'} ${what}${ok || !detail ? '' : `: ${detail}`}`);
  return ok;
}

export function same(what, actual, expected) {
  const a = JSON.stringify(actual);
  return check(what, a === JSON.stringify(expected), `got ${a?.slice(0, 300)}`);
}

export function fact(what, value) {
  facts[what] = value;
  console.log(`       ${what}: ${value}`);
}

export function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export async function post(url, body, headers = { 'content-type': 'application/json' }) {
  const res = await fetch(url, { method: 'POST', headers, body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

export async function get(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` every `everyMs` until it is true (true) or `timeoutMs` has passed (false). */
export async function waitFor(probe, timeoutMs, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await probe()) return true;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}

/** The exit code of a container that has stopped, as a string ('' while it runs). */
export function exitCode(container) {
  return podman('inspect', container, '--format', '{{.State.ExitCode}}');
}

/** The last lines of a container's output, to say why a check failed. */
export function logsOf(container, lines = 30) {
  return podmanTry('logs', '--tail', String(lines), container).out;
}

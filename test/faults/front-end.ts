// The front end as a user starts it, `tsserve --start --foreground` in a child process, for the
// fault tests that kill it (`kill -9`), and whether a process it left is alive.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { ROOT } from '../helpers.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');

/** Starts tsserve in `dir` (its model-store/ and config.properties) serving `models` (`name=file.mar`); SIGKILLed at the test's end. */
export function startFrontEnd(t: Test, dir: string, models: readonly string[]): { child: ChildProcess; exited: Promise<void> } {
  const child = spawn(
    process.execPath,
    [TSSERVE, '--start', '--foreground', '--ncs', '--model-store', 'model-store', '--models', ...models, '--disable-token-auth'],
    { cwd: dir, env: { ...process.env, TMPDIR: dir }, stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(() => child.kill('SIGKILL'));
  return { child, exited };
}

/** Whether `pid` is a live process (a zombie is not: it runs no code). */
export function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

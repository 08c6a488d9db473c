/**
 * @module worker/parent-watch
 * How a worker dies with its front end where no parent-death signal does it (workers/worker-process.ts):
 * a thread that checks every WATCH_INTERVAL_MS whether the worker's parent is still the front end
 * that started it, and SIGKILLs the worker once it is not (the front end died, the worker was
 * handed to init or a subreaper). A thread, because it has an event loop of its own: the main
 * thread's is blocked for as long as a handler or onnxruntime computes, and a busy worker never
 * sees its IPC channel close. It costs about 19 MB a worker, which is why it is the fallback.
 */
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { Worker } from 'node:worker_threads';

const WATCH_INTERVAL_MS = 500;

// Plain script, so the thread loads nothing of ours.
const WATCH = `
const { workerData } = require('node:worker_threads');
setInterval(() => {
  if (process.ppid !== workerData.parent) process.kill(process.pid, 'SIGKILL');
}, workerData.intervalMs);
`;

/** Starts the watch of the parent the worker has now; it never keeps the worker alive by itself. */
export function watchParent(): void {
  const watch = new Worker(WATCH, { eval: true, workerData: { parent: process.ppid, intervalMs: WATCH_INTERVAL_MS }, stdout: false, stderr: false });
  watch.on('error', (err) => console.error(`The watch of the front end stopped: ${err.message}`));
  watch.unref();
}

/**
 * Ends the worker's process group, what its handler started, once the worker is dead, however it
 * died. After a `kill -9` of the front end nobody else does: the front end ends a worker's group
 * when it sees the worker exit (workers/worker-host.ts), and the worker itself dies by SIGKILL
 * (the parent-death signal, the watch), which runs none of its code. So a shell in the worker's
 * group (about 1 MB) waits on a pipe only the worker holds, and when the pipe closes, at the
 * worker's death, kills the group, itself last. Not on Windows, where the worker leads no group,
 * nor where the handler may start no process.
 */
export function endGroupWithWorker(): void {
  // Under worker_permission (workers/permissions.ts) the handler starts no process: nothing to end.
  if (process.platform === 'win32' || process.permission?.has('child') === false) return;
  try {
    const reaper = spawn('/bin/sh', ['-c', 'read _; kill -KILL 0'], { stdio: ['pipe', 'ignore', 'ignore'] });
    reaper.on('error', (err) => console.error(`The handler's processes will not end with the front end's kill -9: ${err.message}`));
    reaper.stdin?.on('error', () => undefined);
    // A pipe is a socket; unreferenced, it keeps the worker from no exit of its own.
    (reaper.stdin as Socket | null)?.unref();
    reaper.unref();
  } catch (err) {
    console.error(`The handler's processes will not end with the front end's kill -9: ${(err as Error).message}`);
  }
}

/**
 * @module worker/parent-watch
 * How a worker dies with its front end where no parent-death signal does it (workers/worker-process.ts):
 * a thread that checks every WATCH_INTERVAL_MS whether the worker's parent is still the front end
 * that started it, and SIGKILLs the worker once it is not (the front end died, the worker was
 * handed to init or a subreaper). A thread, because it has an event loop of its own: the main
 * thread's is blocked for as long as a handler or onnxruntime computes, and a busy worker never
 * sees its IPC channel close. It costs about 19 MB a worker, which is why it is the fallback.
 */
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

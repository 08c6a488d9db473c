/**
 * @module cli/stop-signal
 * SIGTERM, SIGINT and SIGHUP, caught from the process's first moment: the bin scripts import this module
 * before anything else, so a stop asked for while the rest loads (half a second) or while the
 * server starts is kept, not lost. Lost it would be: Node as a container's main process (PID 1)
 * ignores a signal it has no handler for, and the pod runtime kills it at the end of its grace
 * period. Each command then says what a stop does at each moment (onStop); one that a signal
 * should simply end (`--stop`, `--version`) gives the signals their default action back.
 */
import { constants } from 'node:os';

// SIGHUP too: a terminal that closes on a foreground server stops it as Ctrl-C does, answering what
// it accepted, where the default action ended it at once (TorchServe's JVM runs its shutdown hooks).
// Node.js resets every disposition at its start, `nohup`'s ignored SIGHUP included: under nohup too
// a SIGHUP ended the server, and now stops it.
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
type StopSignalName = (typeof SIGNALS)[number];

/** Whether a process that `signal` ended was stopped: the signal a stop sends, come before the process could catch it. */
export function isStopSignal(signal: NodeJS.Signals | null): boolean {
  return (SIGNALS as readonly string[]).includes(signal ?? '');
}

const asked = new AbortController();

/** Aborted once a SIGTERM, SIGINT or SIGHUP came; its reason names the signal. Later ones change nothing. */
export const stopAsked: AbortSignal = asked.signal;

const ask = (signal: StopSignalName): void => asked.abort(signal);
for (const signal of SIGNALS) process.on(signal, ask);

/**
 * Runs `stop` once a stop is asked for, at once if it was already. Answers the function that
 * forgets it: a stop asked for after that is someone else's to carry out.
 */
export function onStop(stop: () => void): () => void {
  if (stopAsked.aborted) {
    stop();
    return () => {};
  }
  stopAsked.addEventListener('abort', stop, { once: true });
  return () => stopAsked.removeEventListener('abort', stop);
}

/** The exit status a shell gives a command that a signal ended (130 for SIGINT, 143 for SIGTERM): for a command a stop interrupted. */
export function interruptedStatus(): number {
  return 128 + constants.signals[(stopAsked.reason as StopSignalName | undefined) ?? 'SIGTERM'];
}

/** For a command that a signal simply ends: the default action again, and a signal that came already ends it now. */
export function defaultStopSignals(): void {
  for (const signal of SIGNALS) process.off(signal, ask);
  if (stopAsked.aborted) process.kill(process.pid, stopAsked.reason as StopSignalName);
}

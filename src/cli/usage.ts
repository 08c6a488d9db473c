/**
 * @module cli/usage
 * What every CLI of tsserve shares about its command line: a usage error (an unknown flag, a
 * missing argument, a bad value) exits 2, as argparse makes torchserve and torch-model-archiver
 * exit, so scripts can tell "called wrongly" from "failed" (1).
 */
import { InvalidArgumentError, type Command } from 'commander';

export const USAGE_EXIT_CODE = 2;

export function exitTwoOnUsageError(program: Command): Command {
  // Help and --version exit 0; every other exit commander makes is a usage error.
  return program.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : USAGE_EXIT_CODE));
}

/** A commander argument parser for a TCP port, 0 to 65535. */
export function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new InvalidArgumentError('a port is a whole number from 0 to 65535.');
  return port;
}

/** A commander argument parser for a size in bytes (at least 1). */
export function parseBytes(value: string): number {
  const bytes = Number(value);
  if (!/^\d+$/.test(value) || bytes < 1 || !Number.isSafeInteger(bytes)) throw new InvalidArgumentError('a size is a whole number of bytes, at least 1.');
  return bytes;
}

/** The longest wait a seconds option takes: a day, far within what Node's timers hold (24.8 days). */
const MAX_SECONDS = 86_400;

/** A commander argument parser for a whole number of seconds, 0 to a day. */
export function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (!/^\d+$/.test(value) || seconds > MAX_SECONDS) throw new InvalidArgumentError(`a time is a whole number of seconds from 0 to ${MAX_SECONDS}.`);
  return seconds;
}

/** A commander argument parser for an http(s) base URL. */
export function parseHttpUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('not a URL; give one such as http://127.0.0.1:8080.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError('only http:// and https:// URLs are served.');
  return value.replace(/\/+$/, '');
}

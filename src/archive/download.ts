/**
 * @module archive/download
 * An archive written into the model store from elsewhere: the body of an http(s) URL, or a file
 * outside the store that allowed_urls allows. Nothing a remote server does can end the process or
 * leave a partial file: the body goes to a hidden partial file beside the target, bounded by
 * max_download_size and by download_timeout for the whole transfer (a server that stalls after its
 * headers included); it becomes the target only when complete, and never replaces a file already
 * there. Any failure removes it; one a killed server left is removed at the next start
 * (removeStalePartials).
 *
 * node:http/node:https, not fetch: the fetch bundled with Node 22 and 24 (undici before
 * nodejs/undici#5474, and the undici 7.x in node_modules too) ends the process with an uncatchable
 * assertion when a server closes the connection after a body the reader has not caught up with
 * (HTTP/1.0 and `Connection: close`, as Python's http.server). One GET with redirects is smaller
 * and surer than a new runtime dependency: Node's own client has no such assertion, reports a body
 * shorter than its Content-Length, or bytes after it that arrive before it closes the connection,
 * as errors, and a redirect is followed only to an http(s) URL that allowed_urls allows, at most
 * MAX_REDIRECTS times.
 */
import type { FileHandle } from 'node:fs/promises';
import { createWriteStream, type Dirent, linkSync, lstatSync, readdirSync, rmSync } from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { basename, dirname, join } from 'node:path';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { timerMs } from '../timer-ms.js';
import { isAlive } from './extract.js';

export interface TransferLimits {
  readonly maxBytes: number;
  readonly timeoutMs: number;
  /** The server's stop: a transfer under way when it is asked for ends (and its partial file goes). */
  readonly stop?: AbortSignal | undefined;
}

/** Why a transfer failed; the caller answers the client with its own words. */
export class TransferError extends Error {}

/** `target` exists already: nothing was written. */
export class TargetExistsError extends TransferError {}

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** A source's bytes, their announced length, and whether the source ended well once they are read. */
interface Body {
  readonly stream: Readable;
  readonly length: number | undefined;
  readonly ended: Promise<void>;
}

let partials = 0;

/** GETs `url` (following allowed redirects) into `target`. */
export function download(url: URL, target: string, allowed: (url: URL) => boolean, limits: TransferLimits): Promise<void> {
  return writeWhole(target, limits, (signal) => respond(url, allowed, signal));
}

/** Copies the open regular file `source` into `target`. */
export function copy(source: FileHandle, target: string, limits: TransferLimits): Promise<void> {
  return writeWhole(target, limits, async () => ({
    stream: source.createReadStream({ autoClose: false }),
    length: (await source.stat()).size,
    ended: Promise.resolve(),
  }));
}

/** A partial file's name: hidden, beside its target, naming the server (its pid) that writes it. */
function partialName(target: string): string {
  return join(dirname(target), `.${basename(target)}.tsserve-part-${process.pid}-${++partials}`);
}

const PARTIAL = /^\..+\.tsserve-part-(\d+)-\d+$/;

/**
 * How long a partial file must have gone unwritten to be stale. A pid says nothing across pid
 * namespaces (two containers sharing a model store are each pid 1): a transfer under way writes
 * its file as bytes arrive, so one written lately may be another server's, and stays.
 */
export const STALE_PARTIAL_MS = 60_000;

/**
 * Removes from `store` the partial files (partialName) of servers no longer running: a server
 * killed mid-transfer (SIGKILL, a lost machine) had no moment to remove its own. Called at the
 * start, before any transfer, so one naming this server's pid is stale too (a container's server
 * often has the same pid each run). Only files named as partialName names them go, never a
 * user's; answers the names removed.
 */
export function removeStalePartials(store: string, now = Date.now()): { removed: string[]; failed: string[] } {
  let entries: Dirent[];
  try {
    entries = readdirSync(store, { withFileTypes: true });
  } catch {
    return { removed: [], failed: [] };
  }
  const stale = entries.filter((e) => e.isFile() && isStalePartial(join(store, e.name), now)).map((e) => e.name);
  const removed: string[] = [];
  const failed: string[] = [];
  for (const name of stale) {
    // A read-only model store (Kubernetes mounts it so) keeps its partials: never a reason not to start.
    try {
      rmSync(join(store, name), { force: true });
      removed.push(name);
    } catch {
      failed.push(name);
    }
  }
  return { removed, failed };
}

function isStalePartial(path: string, now: number): boolean {
  const pid = PARTIAL.exec(basename(path))?.[1];
  if (pid === undefined || (Number(pid) !== process.pid && isAlive(Number(pid)))) return false;
  const written = lstatSync(path, { throwIfNoEntry: false })?.mtimeMs;
  return written !== undefined && now - written >= STALE_PARTIAL_MS;
}

async function writeWhole(target: string, limits: TransferLimits, open: (signal: AbortSignal) => Promise<Body>): Promise<void> {
  const partial = partialName(target);
  const timeout = AbortSignal.timeout(timerMs(limits.timeoutMs));
  const signal = limits.stop ? AbortSignal.any([timeout, limits.stop]) : timeout;
  try {
    const body = await open(signal);
    if (body.length !== undefined && body.length > limits.maxBytes) {
      body.stream.destroy();
      throw new TransferError(`${body.length} bytes is over max_download_size`);
    }
    const counted = countBytes(limits.maxBytes);
    await pipeline(body.stream, counted.stream, createWriteStream(partial, { flags: 'wx' }), { signal });
    if (body.length !== undefined && counted.total() !== body.length) throw new TransferError(`${counted.total()} bytes of ${body.length}`);
    await body.ended;
    publish(partial, target);
  } finally {
    rmSync(partial, { force: true });
  }
}

/** A pass-through that fails once more than `max` bytes went through it. */
function countBytes(max: number): { stream: Transform; total: () => number } {
  let total = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
      total += chunk.length;
      done(total > max ? new TransferError('over max_download_size') : null, chunk);
    },
  });
  return { stream, total: () => total };
}

/** The partial file becomes `target`, which a link, unlike a rename, never replaces. */
function publish(partial: string, target: string): void {
  try {
    linkSync(partial, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new TargetExistsError(target);
    throw err;
  }
}

/** The 200 answer to `url`, after at most MAX_REDIRECTS redirects to allowed http(s) URLs. */
async function respond(url: URL, allowed: (url: URL) => boolean, signal: AbortSignal): Promise<Body> {
  for (let redirects = 0; ; redirects++) {
    const { res, ended } = await get(url, signal);
    const location = res.headers.location;
    if (res.statusCode === 200) {
      const length = res.headers['content-length'];
      return { stream: res, length: length === undefined ? undefined : Number(length), ended };
    }
    res.destroy();
    if (!REDIRECTS.has(res.statusCode ?? 0) || !location) throw new TransferError(`status ${res.statusCode}`);
    if (redirects === MAX_REDIRECTS) throw new TransferError(`more than ${MAX_REDIRECTS} redirects`);
    url = new URL(location, url);
    if (!/^https?:$/.test(url.protocol) || !allowed(url)) throw new TransferError(`redirected to ${url.href}, which allowed_urls does not allow`);
  }
}

/**
 * One GET on a connection of its own. `ended` settles when the connection is closed: rejected if
 * the request failed at any time, even after the body (bytes after its Content-Length, a reset).
 * Every error has a listener from the start, so none is ever thrown at the process.
 */
function get(url: URL, signal: AbortSignal): Promise<{ res: IncomingMessage; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let failure: Error | undefined;
    const req = (url.protocol === 'https:' ? httpsGet : httpGet)(url, { agent: false, signal }, (res) => {
      res.on('error', (err) => {
        failure ??= err;
      });
      const ended = new Promise<void>((ok, fail) => req.once('close', () => (failure ? fail(failure) : ok())));
      ended.catch(() => {});
      resolve({ res, ended });
    });
    req.on('error', (err) => {
      failure ??= err;
      reject(err);
    });
  });
}

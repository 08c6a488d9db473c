/**
 * @module log/log-file
 * One log file as TorchServe's log4j2.xml keeps it: appended to in the background, in pieces, and
 * rolled when it reaches a size or a new local day to `<name>.<dd-MMM>.log.gz`, keeping the newest
 * few (spec §11). A disk that does not take the lines (full, read-only) costs a bounded amount of
 * memory and never a stop: past QUEUE_LIMIT queued bytes lines are dropped and counted, a write
 * that fails drops its lines, and once the disk takes writes again the log says how many it lost.
 */
import { close, closeSync, createReadStream, createWriteStream, fstatSync, ftruncate, open, openSync, write, writeSync } from 'node:fs';
import { copyFile, readdir, rename, stat, unlink, utimes } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';

/** When a file rolls and how many rolled files are kept (log4j2's SizeBasedTriggeringPolicy and DefaultRolloverStrategy max). */
export interface Rolling {
  /** Roll before the file passes this many bytes; 0: never by size. */
  readonly maxBytes: number;
  /** Rolled files kept; the oldest beyond this are removed. */
  readonly keep: number;
}

export interface LogFileOptions {
  readonly rolling?: Rolling;
  /** Roll by copying and truncating, not renaming: another process appends to the file too. */
  readonly copyTruncate?: boolean;
  /** Bytes to gather before a write starts (flush() writes fewer). */
  readonly minLength?: number;
  /** The first failure of a run of failing writes. */
  readonly onError: (err: Error) => void;
  /** The disk takes writes again after `dropped` lines were lost: the owner says so in its own layout. */
  readonly onRecovered: (dropped: number) => void;
}

/**
 * Queued bytes past which lines are dropped: 15 s of the access log of a loaded server, or a long
 * burst of a handler's prints, rides out a slow disk; a full one costs at most this (and the one
 * write in flight) per file.
 */
export const QUEUE_LIMIT = 1024 * 1024;

/** How long a failing file waits before it tries the disk again. */
const RETRY_MS = 1000;
/** How long a file whose roll failed grows before it tries again. */
const ROLL_RETRY_MS = 60_000;

const writeAsync = promisify(write);
const openAsync = promisify(open);
const closeAsync = promisify(close);
const ftruncateAsync = promisify(ftruncate);

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** log4j's `%d{dd-MMM}`: `06-Dec`, local time. */
export function rollDay(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getDate()).padStart(2, '0')}-${MONTHS[d.getMonth()]}`;
}

export class LogFile {
  readonly path: string;
  private readonly options: LogFileOptions;
  private fd: number;
  private size: number;
  private day: string;
  /**
   * The lines not yet written, as one string appended to: a line costs an append, not an array
   * entry and a count of its own, and the string is turned into bytes once per write. Its length
   * in characters stands for bytes in the queue's bounds (a line is mostly ASCII).
   */
  private queued = '';
  private writing = false;
  private closed = false;
  /** A write failed and the retry has not come yet: lines wait in the queue (up to its limit). */
  private waiting = false;
  /** The failures since the disk last took a write have been reported. */
  private reported = false;
  private retry: NodeJS.Timeout | undefined;
  /** Lines lost since the disk last took a write. */
  private lost = 0;
  /** No roll is tried before this time (a roll failed). */
  private nextRollAt = 0;

  /** Opened here, synchronously: a background open that failed after the caller moved on would go unreported. */
  constructor(path: string, options: LogFileOptions) {
    this.path = path;
    this.options = options;
    this.fd = openSync(path, 'a');
    const st = fstatSync(this.fd);
    this.size = st.size;
    // A file left by an earlier day rolls under that day's name.
    this.day = rollDay(st.size > 0 ? st.mtimeMs : Date.now());
  }

  /** Queues `text`, one or more whole lines, each ending in a line feed. */
  write(text: string): void {
    if (this.closed) return;
    if (this.queued.length + text.length > QUEUE_LIMIT) {
      this.drop(1);
      return;
    }
    this.queued += text;
    if (!this.writing && !this.waiting && this.queued.length >= (this.options.minLength ?? 0)) this.startWrite();
  }

  /** Starts a write of what is queued now, however little. */
  flush(): void {
    if (!this.writing && !this.waiting && this.queued.length > 0) this.startWrite();
  }

  /**
   * Writes what is queued, once and synchronously, and closes the file: a stop never waits on a
   * disk that refuses (what it refuses is dropped). Lines queued behind a write in flight are
   * written now, ahead of it, rather than lost at exit; that write closes the file when it ends.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retry);
    const rest = this.takeQueue();
    try {
      if (rest.length > 0) writeSync(this.fd, rest);
    } catch {
      /* the disk refused the last lines: nothing is waiting for them */
    }
    if (!this.writing) closeSync(this.fd);
  }

  /** The queued lines, from the oldest, up to `room` characters (but at least one line). */
  private takeQueue(room = Number.POSITIVE_INFINITY): Buffer {
    const length = this.queued.length <= room ? this.queued.length : wholeLines(this.queued, room);
    const text = this.queued.slice(0, length);
    this.queued = this.queued.slice(length);
    return Buffer.from(text);
  }

  /**
   * What one write may take from the queue: what fits before the file must roll, or, once it
   * rolls, in the new one. Lines queued during a slow write or roll (a busy machine) went out as
   * one write after the roll, and the file passed its size by all of them.
   */
  private writeRoom(): number {
    const maxBytes = this.options.rolling?.maxBytes ?? 0;
    if (maxBytes <= 0) return Number.POSITIVE_INFINITY;
    const left = maxBytes - this.size;
    return left > 0 ? left : maxBytes;
  }

  private startWrite(): void {
    this.writing = true;
    void this.writeQueued().finally(() => {
      this.writing = false;
      if (this.closed) closeSync(this.fd);
      else if (!this.waiting && this.queued.length > 0 && this.queued.length >= (this.options.minLength ?? 0)) this.startWrite();
    });
  }

  private async writeQueued(): Promise<void> {
    let bytes = this.takeQueue(this.writeRoom());
    try {
      if (this.dueToRoll(bytes.length)) await this.roll().catch((err: Error) => this.rollFailed(err));
      while (bytes.length > 0) {
        const { bytesWritten } = await writeAsync(this.fd, bytes);
        this.size += bytesWritten;
        bytes = bytes.subarray(bytesWritten);
      }
      this.recovered();
    } catch (err) {
      this.drop(lineCount(bytes));
      this.fail(err as Error);
    }
  }

  private drop(lines: number): void {
    this.lost += lines;
  }

  private fail(err: Error): void {
    if (!this.reported) this.options.onError(err);
    this.reported = true;
    if (this.closed) return;
    this.waiting = true;
    this.retry = setTimeout(() => {
      this.waiting = false;
      this.flush();
    }, RETRY_MS);
    this.retry.unref();
  }

  private recovered(): void {
    this.reported = false;
    if (this.lost === 0) return;
    const lost = this.lost;
    this.lost = 0;
    this.options.onRecovered(lost);
  }

  /** A roll that failed (no room for the copy) is reported and tried again a while later; the lines still go in. */
  private rollFailed(err: Error): void {
    this.options.onError(err);
    this.nextRollAt = Date.now() + ROLL_RETRY_MS;
  }

  private dueToRoll(adding: number): boolean {
    const rolling = this.options.rolling;
    if (!rolling || this.size === 0 || Date.now() < this.nextRollAt) return false;
    return (rolling.maxBytes > 0 && this.size + adding > rolling.maxBytes) || rollDay(Date.now()) !== this.day;
  }

  /**
   * Moves the file's lines to its rolled name and starts it empty, then compresses and prunes in
   * the background. Renamed and reopened, or, for a file another process also appends to (the
   * stdout `tsserve --start` gives its server, where a crash's trace lands), copied and
   * truncated, logrotate's copytruncate: that writer keeps writing into ts_log.log.
   */
  private async roll(): Promise<void> {
    const rolled = await this.freeRolledName();
    if (this.options.copyTruncate) {
      await copyFile(this.path, rolled).catch(async (err: Error) => {
        await unlink(rolled).catch(() => {});
        throw err;
      });
      await ftruncateAsync(this.fd, 0);
    } else {
      await rename(this.path, rolled);
      // Dated now, as a copy is: renamed, it kept its last write's time, a day ago or more, and an
      // earlier roll's prune running meanwhile took it, waiting for its compression, for the oldest.
      const now = new Date();
      await utimes(rolled, now, now);
      const old = this.fd;
      this.fd = await openAsync(this.path, 'a');
      await closeAsync(old);
    }
    this.size = 0;
    this.day = rollDay(Date.now());
    void compress(rolled)
      .then(() => prune(this.path, this.options.rolling!.keep))
      .catch((err: Error) => this.options.onError(err));
  }

  /** `<name>.<dd-MMM>.log`, then `.1`, `.2`... for later rolls of the same day. */
  private async freeRolledName(): Promise<string> {
    const stem = this.path.replace(/\.log$/, '');
    for (let i = 0; ; i++) {
      const name = `${stem}.${this.day}${i === 0 ? '' : `.${i}`}.log`;
      if (!(await exists(name)) && !(await exists(`${name}.gz`))) return name;
    }
  }
}

/** How many characters of `text`'s whole lines fit in `room`: at least its first line, whatever its length. */
function wholeLines(text: string, room: number): number {
  const lastFitting = text.lastIndexOf('\n', room - 1);
  if (lastFitting !== -1) return lastFitting + 1;
  const first = text.indexOf('\n');
  return first === -1 ? text.length : first + 1;
}

function lineCount(bytes: Buffer): number {
  let n = 0;
  for (let i = bytes.indexOf(10); i !== -1; i = bytes.indexOf(10, i + 1)) n++;
  return Math.max(n, 1);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** gzip `path` to `path.gz` and remove it; on a disk without room for both, the uncompressed file stays. */
async function compress(path: string): Promise<void> {
  try {
    await pipeline(createReadStream(path), createGzip(), createWriteStream(`${path}.gz`));
  } catch (err) {
    await unlink(`${path}.gz`).catch(() => {});
    throw err;
  }
  await unlink(path);
}

/**
 * Removes the oldest rolls of `path` beyond `keep`. A roll being compressed is there twice for a
 * moment (`.log` and `.log.gz`): counted once, else a prune running then (an earlier roll's, rolls
 * coming fast) took one more old roll than `keep` allows. A file gone meanwhile (compressed) is skipped.
 */
export async function prune(path: string, keep: number): Promise<void> {
  const dir = dirname(path);
  const stem = basename(path).replace(/\.log$/, '');
  const pattern = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.\\d\\d-[A-Z][a-z]{2}(\\.\\d+)?\\.log(\\.gz)?$`);
  const rolls = new Map<string, { paths: string[]; at: number }>();
  for (const name of (await readdir(dir)).filter((n) => pattern.test(n))) {
    const at = (await stat(join(dir, name)).catch(unlessGone))?.mtimeMs;
    if (at === undefined) continue;
    const key = name.replace(/\.gz$/, '');
    const roll = rolls.get(key) ?? { paths: [], at };
    roll.paths.push(join(dir, name));
    roll.at = Math.max(roll.at, at);
    rolls.set(key, roll);
  }
  const oldest = [...rolls.values()].sort((a, b) => b.at - a.at).slice(keep);
  await Promise.all(oldest.flatMap((r) => r.paths).map((p) => unlink(p).catch(unlessGone)));
}

/** A file another step removed meanwhile (a compression, another prune) is no error. */
function unlessGone(err: NodeJS.ErrnoException): undefined {
  if (err.code !== 'ENOENT') throw err;
  return undefined;
}

/**
 * @module workers/output-lines
 * A worker's stdout or stderr in lines, for the model log, holding at most MAX_LOG_LINE bytes of
 * any line: the rest of a longer one is counted and dropped as it arrives, and the line is logged
 * cut, with `[... N bytes cut]`. A handler that prints 300 MB on one line, or writes forever
 * without a newline, costs the front end 64 KiB, not what it wrote. Lines end at `\n`, `\r\n` or
 * `\r`, as readline's do.
 */
import type { Readable } from 'node:stream';

/** The longest line logged whole. */
export const MAX_LOG_LINE = 64 * 1024;

const LF = 0x0a;
const CR = 0x0d;

export function readLines(source: Readable, onLine: (line: string) => void, max = MAX_LOG_LINE): void {
  const line = new CutLine(max);
  let afterCr = false;
  source.on('data', (chunk: Buffer) => {
    let start = 0;
    // The \n of a \r\n split across two reads ends no second line.
    if (afterCr && chunk[0] === LF) start = 1;
    afterCr = false;
    for (let i = start; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte !== LF && byte !== CR) continue;
      line.add(chunk.subarray(start, i));
      onLine(line.take());
      if (byte === CR && i + 1 < chunk.length && chunk[i + 1] === LF) i++;
      afterCr = byte === CR && i + 1 === chunk.length;
      start = i + 1;
    }
    line.add(chunk.subarray(start));
  });
  source.on('end', () => {
    if (!line.empty) onLine(line.take());
  });
}

/** One line's first `max` bytes, and how many more it had. */
class CutLine {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private cut = 0;
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  get empty(): boolean {
    return this.heldBytes === 0 && this.cut === 0;
  }

  add(bytes: Buffer): void {
    const kept = Math.min(bytes.length, this.max - this.heldBytes);
    this.cut += bytes.length - kept;
    if (kept === 0) return;
    // A copy: a slice would keep the whole read it came from.
    this.held.push(Buffer.from(bytes.subarray(0, kept)));
    this.heldBytes += kept;
  }

  take(): string {
    const text = Buffer.concat(this.held, this.heldBytes).toString('utf8');
    const line = this.cut > 0 ? `${text} [... ${this.cut} bytes cut]` : text;
    this.held = [];
    this.heldBytes = 0;
    this.cut = 0;
    return line;
  }
}

/**
 * @module log/loggers
 * The server's logs, as TorchServe keeps them under LOG_LOCATION: the server log (on stdout in
 * the foreground; ts_log.log, written by the server itself, when `tsserve --start` launched it:
 * log4j-style text lines by default, as TorchServe users read them, or pino's JSON with
 * log_format=json for log shippers), access_log.log (one
 * line per response), model_log.log (what handlers print); and in
 * `metrics_mode=log`, under METRICS_LOCATION, ts_metrics.log and model_metrics.log
 * (metrics/registry.ts writes the lines).
 * Files are written asynchronously so logging never waits on the disk in the request path, roll
 * as TorchServe's log4j2.xml rolls them, and cost bounded memory on a disk that refuses lines
 * (log/log-file.ts).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { LogFormat } from '../config/server-config.js';
import { formatLocalTime } from '../local-time.js';
import { LogFile, type Rolling } from './log-file.js';
import { summaryLines } from './start-up-summary.js';

export interface Loggers {
  readonly server: Logger;
  /** `<remote> "<METHOD> <uri> HTTP/<v>" <status> <ms>` */
  access(line: string): void;
  /** A line a worker printed, prefixed with the worker's thread name. */
  model(workerName: string, stream: 'stdout' | 'stderr', line: string): void;
  /** A metric line: the server's to ts_metrics.log, the handlers' to model_metrics.log. */
  metric(file: 'ts' | 'model', line: string): void;
  /** Writes what is queued, once, and closes the files, never waiting on the disk; later lines are dropped. */
  close(): void;
}

export interface LoggerOptions {
  /** The server log's level: 'info' unless told. */
  readonly level?: string;
  /** Where metric logs go; LOG_LOCATION's folder unless told. */
  readonly metricsLocation?: string;
  /** Where the server log's lines go instead of stdout. */
  readonly destination?: { write(line: string): void };
  /**
   * The server log written to LOG_LOCATION/ts_log.log by this process, rolled as the other files,
   * rather than to stdout: `tsserve --start`'s server, whose stdout is that file and could not roll.
   */
  readonly serverLogFile?: boolean;
  /** `text` (log4j's layout, TorchServe's) unless told; `json`: pino's lines. */
  readonly format?: LogFormat;
  /** When the files roll and how many rolled ones are kept; never unless told. */
  readonly rolling?: Rolling;
}

export function createLoggers(logLocation: string, opts: LoggerOptions = {}): Loggers {
  const { level = 'info', metricsLocation = logLocation, format = 'text' } = opts;
  mkdirSync(logLocation, { recursive: true });
  const options = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  // The server log's own file reports its failures to itself: they are queued or dropped like any line.
  let server: Logger | undefined;
  const file = (path: string, minLength = 0, copyTruncate = false): LogFile =>
    new LogFile(path, {
      rolling: opts.rolling,
      minLength,
      copyTruncate,
      onError: (err) => server?.error({ err, path }, 'log file unwritable: its lines are dropped until the disk takes them again'),
      onRecovered: (dropped) => server?.warn(`${dropped} lines of ${path} were dropped: the disk did not take them`),
    });
  // What that process writes on its stdout and stderr from JavaScript is recorded here too (recordProcessOutput).
  const serverFile = opts.serverLogFile ? file(join(logLocation, 'ts_log.log'), 0, true) : undefined;
  // stdout's own write, bound now: recordProcessOutput may make process.stdout.write a logger's.
  const out = opts.destination ?? serverFile ?? { write: process.stdout.write.bind(process.stdout) };
  server = pino(options, { write: (line: string) => out.write(format === 'json' ? jsonLine(line) : textLine(line)) });
  // The access and metric logs are written in pieces, not a write per request (those writes
  // were 5% of the main process's CPU samples under load), and at least once a second, so that
  // `tail -f` (or a log shipper) sees a quiet server's lines too; close() writes the rest. The
  // access log's pieces are 64 KB: past capacity a line comes with every refusal, and a write
  // each 4 KB (a promise, a thread-pool round trip) was 2-3% of a refusal flood's CPU samples.
  const accessFile = file(join(logLocation, 'access_log.log'), ACCESS_WRITE_BYTES);
  // Opened on the first line: only metrics_mode=log or legacy writes them.
  const metricFiles: Partial<Record<'ts' | 'model', LogFile>> = {};
  const flusher = setInterval(() => {
    for (const f of [accessFile, ...Object.values(metricFiles)]) f.flush();
  }, FLUSH_MS);
  flusher.unref();
  const modelFile = file(join(logLocation, 'model_log.log'));
  let open = true;
  let unwritableMetrics = false;
  const logger = server;
  return {
    server: logger,
    access(line) {
      if (open) accessFile.write(`${timestamp()} - ${oneLine(line)}\n`);
    },
    model(workerName, stream, line) {
      const level = stream === 'stdout' ? 'INFO ' : 'WARN ';
      if (open) modelFile.write(`${timestamp()} [${level}] ${oneLine(workerName)}-${stream} MODEL_LOG - ${oneLine(line)}\n`);
      if (stream === 'stderr') logger.warn({ worker: workerName }, line);
    },
    metric(kind, line) {
      if (!open || unwritableMetrics) return;
      try {
        if (!metricFiles[kind]) {
          mkdirSync(metricsLocation, { recursive: true });
          metricFiles[kind] = file(join(metricsLocation, `${kind}_metrics.log`), 4096);
        }
      } catch (err) {
        // A metric line is written from the request path, which must not fail for it.
        logger.error({ err, path: metricsLocation }, 'metrics log unwritable; metric lines are dropped');
        unwritableMetrics = true;
        return;
      }
      metricFiles[kind]!.write(`${timestamp()} - ${oneLine(line)}\n`);
    },
    close() {
      if (!open) return;
      open = false;
      clearInterval(flusher);
      for (const f of [accessFile, modelFile, ...Object.values(metricFiles), ...(serverFile ? [serverFile] : [])]) f.close();
    },
  };
}

/** The longest a line of the access or metric logs waits in memory. */
const FLUSH_MS = 1000;
/** What the access log gathers before a write starts (FLUSH_MS writes less). */
const ACCESS_WRITE_BYTES = 64 * 1024;

/**
 * What this process writes to its stdout and stderr from JavaScript (Node's warnings, a
 * module's console output, the CLI's own lines) as records of the server log, stdout's at INFO and
 * stderr's at WARN, a record per write; and an uncaught exception as a FATAL record, written
 * before the process ends. For the server `tsserve --start` launched, whose stdout and stderr are
 * files: bare lines there would sit among the records (under log_format=json, lines a log shipper
 * cannot parse). What the runtime writes past JavaScript (a fatal V8 error) still reaches them.
 */
export function recordProcessOutput(loggers: Loggers): void {
  const log = loggers.server;
  process.stdout.write = recordWrites((line) => log.info(line));
  process.stderr.write = recordWrites((line) => log.warn(line));
  process.on('uncaughtExceptionMonitor', (err, origin) => {
    log.fatal({ err }, `tsserve stops: ${origin === 'unhandledRejection' ? 'an unhandled rejection' : 'an uncaught exception'}`);
    loggers.close();
  });
}

function recordWrites(record: (line: string) => void): typeof process.stdout.write {
  return ((chunk: string | Uint8Array, encoding?: BufferEncoding | ((err?: Error | null) => void), done?: (err?: Error | null) => void) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const line = text.endsWith('\n') ? text.slice(0, text.endsWith('\r\n') ? -2 : -1) : text;
    if (line.length > 0) record(line);
    const callback = typeof encoding === 'function' ? encoding : done;
    if (callback) process.nextTick(callback);
    return true;
  }) as typeof process.stdout.write;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };

/**
 * One of pino's JSON lines as log4j's `%d{ISO8601} [%-5p] %t %c - %m`, TorchServe's layout:
 * `2026-12-02T07:29:18,354 [INFO ] main tsserve - Restored 1 model versions ...`; the thread is
 * the worker a line came from, else `main`. An error's stack follows on its own lines, as log4j
 * prints one.
 */
function textLine(json: string): string {
  const record = JSON.parse(json) as {
    level: number;
    time: string;
    msg?: string;
    worker?: string;
    err?: { stack?: string; message?: string };
    /** The start-up summary (log/start-up-summary.ts), a line per entry as TorchServe prints it. */
    summary?: unknown;
    [key: string]: unknown;
  };
  const { level, time, msg = '', worker, err, summary, ...fields } = record;
  const summaryText = isRecord(summary) ? summaryLines(summary, oneLine) : '';
  const extra = Object.entries(fields)
    .map(([k, v]) => ` ${oneLine(k)}=${oneLine(typeof v === 'string' ? v : JSON.stringify(v))}`)
    .join('');
  const stack = err ? stackLines(err.stack ?? err.message ?? '') : '';
  return `${timestamp(Date.parse(time))} [${LEVELS[level] ?? 'INFO '}] ${oneLine(worker ?? 'main')} tsserve - ${oneLine(msg)}${extra}${summaryText}${stack}\n`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The characters that end or overwrite a line in a file or a terminal (LF, CR, the other C0 and
 * C1 controls, Unicode's line and paragraph separators); tab is kept.
 */
const LINE_BREAKING = /[^\t\x20-\x7e\xa0-\u2027\u202a-\uffff]/;
const LINE_BREAKING_ALL = new RegExp(LINE_BREAKING.source, 'g');
const ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r' };

/**
 * `text` as part of one log line, its line-breaking characters written as escapes (`\n`, `\r`,
 * `\u001b`). Model names, URLs, headers and handlers' output reach the logs: none of them may
 * start a line of its own that passes for the server's (a forged `[ERROR]` line).
 */
export function oneLine(text: string): string {
  return LINE_BREAKING.test(text) ? text.replace(LINE_BREAKING_ALL, escaped) : text;
}

function escaped(c: string): string {
  return ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * An error's stack on the lines after its record, as log4j prints one. Its own line breaks are
 * those before its frames, which are indented; any other was in the message and is escaped.
 */
function stackLines(stack: string): string {
  return stack
    .split(/\r?\n/)
    .map((line, i) => (i === 0 || /^\s/.test(line) ? '\n' : '\\n') + oneLine(line))
    .join('');
}

/**
 * pino's JSON line with the line separators JSON leaves raw inside strings (U+0085, U+2028,
 * U+2029) escaped, so that an editor or a terminal cannot show a string's part as a line of its
 * own; the JSON means the same.
 */
function jsonLine(line: string): string {
  return JSON_RAW_BREAKS.test(line) ? line.replace(JSON_RAW_BREAKS_ALL, escaped) : line;
}

const JSON_RAW_BREAKS = /[\x85\u2028\u2029]/;
const JSON_RAW_BREAKS_ALL = new RegExp(JSON_RAW_BREAKS.source, 'g');

let formattedSecond = { second: Number.NaN, text: '' };
/** The last timestamp made, for the lines of the same millisecond (most of a loaded server's). */
let formattedMs = { ms: Number.NaN, text: '' };

/** `000` to `999`: a timestamp's milliseconds, each made once. */
const MILLIS = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));

/**
 * log4j's ISO8601 pattern: `2024-05-30T21:46:03,625`. Every access-log line has one, so the
 * date and time up to the second are formatted once a second (formatting each was 2-3% of the
 * front end's work under load), the milliseconds taken from a table, and the whole reused
 * within a millisecond.
 */
export function timestamp(ms = Date.now()): string {
  const whole = Math.floor(ms);
  if (whole === formattedMs.ms) return formattedMs.text;
  const second = Math.floor(whole / 1000);
  if (second !== formattedSecond.second) formattedSecond = { second, text: formatLocalTime(new Date(second * 1000), 'yyyy-MM-ddTHH:mm:ss,') };
  formattedMs = { ms: whole, text: formattedSecond.text + MILLIS[whole - second * 1000] };
  return formattedMs.text;
}

/**
 * @module log/loggers
 * The server's logs, as TorchServe keeps them under LOG_LOCATION: the server log (pino JSON on
 * stdout), access_log.log (one line per response) and model_log.log (what handlers print).
 * Files are written asynchronously so logging never waits on the disk in the request path.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';

export interface Loggers {
  readonly server: Logger;
  /** `<remote> "<METHOD> <uri> HTTP/<v>" <status> <ms>` */
  access(line: string): void;
  /** A line a worker printed, prefixed with the worker's thread name. */
  model(workerName: string, stream: 'stdout' | 'stderr', line: string): void;
  flush(): void;
}

export function createLoggers(logLocation: string, level = 'info'): Loggers {
  mkdirSync(logLocation, { recursive: true });
  const server = pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime });
  const accessFile = pino.destination({ dest: join(logLocation, 'access_log.log'), sync: false, mkdir: true });
  const modelFile = pino.destination({ dest: join(logLocation, 'model_log.log'), sync: false, mkdir: true });
  return {
    server,
    access(line) {
      accessFile.write(`${timestamp()} - ${line}\n`);
    },
    model(workerName, stream, line) {
      const level = stream === 'stdout' ? 'INFO ' : 'WARN ';
      modelFile.write(`${timestamp()} [${level}] ${workerName}-${stream} MODEL_LOG - ${line}\n`);
      if (stream === 'stderr') server.warn({ worker: workerName }, line);
    },
    flush() {
      for (const d of [accessFile, modelFile]) {
        try {
          d.flushSync();
        } catch { /* not yet open */ }
      }
    },
  };
}

/** log4j's ISO8601 pattern: `2024-05-30T21:46:03,625`. */
function timestamp(): string {
  const d = new Date();
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())},${p(d.getMilliseconds(), 3)}`;
}

// The log timestamp formats a second once and adds the milliseconds: the same text as formatting
// each time, across second boundaries, backwards in time, and in a time zone off UTC.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { formatLocalTime } from '../local-time.js';
import { createLoggers, timestamp } from './loggers.js';

// Half an hour off UTC: a cached second must still be the local one.
process.env.TZ = 'Asia/Kolkata';

t.test('timestamp(ms) is log4j ISO8601 local time, to the millisecond', async (t) => {
  const base = Date.UTC(2026, 11, 2, 23, 59, 58, 0);
  const moments = [0, 1, 999, 1000, 1001, 1999, 2000, 2001, 500, 1_000_000, 999, 86_400_000 + 7].map((d) => base + d);
  for (const ms of moments) {
    t.equal(timestamp(ms), formatLocalTime(new Date(ms), 'yyyy-MM-ddTHH:mm:ss,SSS'), new Date(ms).toISOString());
  }
  t.equal(formatLocalTime(new Date(base), 'HH:mm'), '05:29', 'the zone is in effect');
  t.match(timestamp(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3}$/, 'now, by default');
});

// What clients and handlers choose (model names, URLs, headers, printed lines) reaches every log:
// none of it may break a line, so none can forge one. Each record stays one line (an error's stack
// on indented lines after it), in the text layout and in JSON alike.
t.test('no logged text can start a line of its own', async (t) => {
  const forged = '2000-01-01T00:00:00,000 [ERROR] main tsserve - FORGED';
  const breaks = ['\n', '\r', '\r\n', '\u2028', '\u2029', '\u0085', '\u000b', '\u000c'];
  for (const format of ['text', 'json'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'tsserve-loggers-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const server: string[] = [];
    const loggers = createLoggers(dir, { format, destination: { write: (line) => server.push(line) } });
    for (const b of breaks) {
      loggers.server.info(`model x${b}${forged}`);
      loggers.server.warn({ worker: `W-9000-x${b}${forged}`, url: `/x${b}${forged}` }, 'with fields');
      loggers.server.error({ err: new Error(`failed x${b}${forged}`) }, `failed${b}${forged}`);
      // The start-up summary's lines (text layout): a value, or a key, that breaks a line.
      loggers.server.info({ summary: { modelStore: `/x${b}${forged}`, [`key${b}${forged}`]: 'v' } }, 'Start-up configuration');
      loggers.access(`/127.0.0.1:1 "GET /x${b}${forged} HTTP/1.1" 200 1`);
      loggers.model(`W-9000-x${b}${forged}`, 'stdout', `printed${b}${forged}`);
      loggers.metric('model', `Metric.Count:1|#ModelName:x${b}${forged}`);
    }
    loggers.close();
    await new Promise((r) => setTimeout(r, 50));
    const files = ['access_log.log', 'model_log.log', 'model_metrics.log'].map((f) => readFileSync(join(dir, f), 'utf8'));
    for (const [what, text] of [['server log', server.join('')], ...files.map((f, i) => [`file ${i}`, f])] as Array<[string, string]>) {
      const lines = text.split(/\r\n|[\n\r\u2028\u2029\u0085\v\f]/);
      t.same(
        lines.filter((l) => l.startsWith('2000-01-01')),
        [],
        `${format}, ${what}: no forged line`,
      );
      t.notOk(/[\r\u2028\u2029\u0085\v\f]/.test(text), `${format}, ${what}: no line break but LF`);
    }
    if (format === 'json') for (const line of server) t.doesNotThrow(() => JSON.parse(line), 'each JSON record is one line');
    t.equal(files[0]!.split('\n').length - 1, breaks.length, `${format}: one access line per request`);
  }
});

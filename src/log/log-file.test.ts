// A log file rolls on a new day under the day its lines were written (a file left by yesterday's
// server rolls as yesterday's), compresses the roll, and keeps only the newest few.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import t from 'tap';
import { LogFile, rollDay } from './log-file.js';

const DAY_MS = 86_400_000;

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 25));
}

t.test('a file from an earlier day rolls under that day on the first write, to <name>.<dd-MMM>.log.gz, keeping the newest few', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-log-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access_log.log');
  const errors: Error[] = [];
  const open = (): LogFile => new LogFile(path, { rolling: { maxBytes: 0, keep: 2 }, onError: (err) => errors.push(err), onRecovered: () => {} });
  for (const daysAgo of [4, 3, 2]) {
    writeFileSync(path, `a line of ${daysAgo} days ago\n`);
    const then = new Date(Date.now() - daysAgo * DAY_MS);
    utimesSync(path, then, then);
    const file = open();
    file.write('a line of today\n');
    const rolled = join(dir, `access_log.${rollDay(then.getTime())}.log.gz`);
    await until(() => existsSync(rolled) && !existsSync(rolled.slice(0, -3)));
    file.close();
    t.equal(gunzipSync(readFileSync(rolled)).toString(), `a line of ${daysAgo} days ago\n`, `rolled as ${rolled}`);
    t.equal(readFileSync(path, 'utf8'), 'a line of today\n', "and today's line starts a new file");
  }
  await until(() => readdirSync(dir).length === 3);
  t.same(
    readdirSync(dir).sort(),
    ['access_log.log', `access_log.${rollDay(Date.now() - 3 * DAY_MS)}.log.gz`, `access_log.${rollDay(Date.now() - 2 * DAY_MS)}.log.gz`].sort(),
    'the two newest rolls are kept',
  );
  t.same(errors, []);
});

// The log timestamp formats a second once and adds the milliseconds: the same text as formatting
// each time, across second boundaries, backwards in time, and in a time zone off UTC.
import t from 'tap';
import { formatLocalTime } from '../local-time.js';
import { timestamp } from './loggers.js';

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

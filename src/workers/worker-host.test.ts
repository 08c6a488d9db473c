// When a host's PSS (smaps_rollup, 25-33 ms of its memory map's lock a read) is read again: after
// PSS_REFRESH_MS where a worker came, left or loaded since the last reading, else only after
// PSS_STEADY_REFRESH_MS (RssAnon follows what serving changes in between).
import t from 'tap';
import { PSS_STEADY_REFRESH_MS, pssDue } from './worker-host.js';

t.test('a reading is due after 5 s where the workers changed since it, after PSS_STEADY_REFRESH_MS where they did not', async (t) => {
  t.equal(pssDue(4_999, true), false, 'a fresh reading after a change: kept');
  t.equal(pssDue(5_001, true), true, 'older than 5 s with a load or unload since: read again');
  t.equal(pssDue(5_001, false), false, 'older than 5 s, the same workers: kept');
  t.equal(pssDue(PSS_STEADY_REFRESH_MS + 1, false), true, 'the same workers, past PSS_STEADY_REFRESH_MS: read again');
});

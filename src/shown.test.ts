// A client's text as the server's messages quote it.
import t from 'tap';
import { shown } from './shown.js';

t.test('quoted and escaped: a line break cannot start a new log line', async (t) => {
  t.equal(shown('a\nb"c'), '"a\\nb\\"c"');
  t.equal(shown('a\r\nSet-Cookie: x'), '"a\\r\\nSet-Cookie: x"');
});

t.test('cut at 100 characters, and said to be', async (t) => {
  t.equal(shown('x'.repeat(100)), `"${'x'.repeat(100)}"`, '100: whole');
  t.equal(shown('x'.repeat(150)), `"${'x'.repeat(100)}..."`);
});

import { PassThrough } from 'node:stream';
import t from 'tap';
import { readLines } from './output-lines.js';

/** The lines `readLines` makes of `reads`, written one by one, with lines cut at `max` bytes. */
async function linesOf(reads: string[], max = 8): Promise<string[]> {
  const source = new PassThrough();
  const lines: string[] = [];
  readLines(source, (line) => lines.push(line), max);
  for (const read of reads) source.write(Buffer.from(read, 'latin1'));
  source.end();
  await new Promise((resolve) => source.on('end', resolve));
  return lines;
}

t.test('lines end at \\n, \\r\\n or \\r, as readline says, also across reads', async (t) => {
  t.same(await linesOf(['a\nb\r\nc\rd']), ['a', 'b', 'c', 'd']);
  t.same(await linesOf(['a\r', '\nb\n']), ['a', 'b'], 'a \\r\\n split between two reads is one break');
  t.same(await linesOf(['ab', 'c', '\n', '\n']), ['abc', ''], 'a line made of several reads; an empty line stays');
  t.same(await linesOf([]), [], 'nothing written: no line');
});

t.test('a line longer than the bound is logged cut, with how much was cut; what follows is intact', async (t) => {
  t.same(await linesOf(['0123456789abcdef\nnext\n']), ['01234567 [... 8 bytes cut]', 'next']);
  t.same(await linesOf(['0123', '4567', '89', 'ab\nnext\n']), ['01234567 [... 4 bytes cut]', 'next'], 'cut across reads');
  t.same(await linesOf(['01234567']), ['01234567'], 'exactly the bound is not cut');
  const endless = Array.from({ length: 1000 }, () => 'x'.repeat(100));
  t.same(await linesOf(endless), [`xxxxxxxx [... ${100_000 - 8} bytes cut]`], 'a stream without a newline: its first bytes, when it ends');
});

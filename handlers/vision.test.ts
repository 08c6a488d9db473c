// The JavaScript fast path for small images must see the same pixels sharp sees.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { decodeSmall, toGrey } from './vision.js';

const DIGITS = join(import.meta.dirname, '..', 'examples', 'mnist', 'digits');

function maxDifference(a: Uint8Array, b: Uint8Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

t.test('PNG and JPEG digits decode to the pixels sharp decodes', async (t) => {
  for (const file of readdirSync(DIGITS).filter((f) => f.endsWith('.png'))) {
    const png = readFileSync(join(DIGITS, file));
    const viaSharp = await sharp(png).greyscale().raw().toBuffer();
    const fast = decodeSmall(png);
    t.ok(fast, `${file}: taken by the fast path`);
    t.equal(maxDifference(toGrey(fast!), viaSharp), 0, `${file}: PNG pixels identical`);
    const jpg = await sharp(png).jpeg({ quality: 90 }).toBuffer();
    const jpgSharp = await sharp(jpg).greyscale().raw().toBuffer();
    t.ok(maxDifference(toGrey(decodeSmall(jpg)!), jpgSharp) <= 4, `${file}: JPEG within the decoders' rounding`);
  }
});

t.test('anything else is left to sharp', async (t) => {
  const big = await sharp({ create: { width: 400, height: 400, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).png().toBuffer();
  t.equal(decodeSmall(big), undefined, 'a file over 32 KB');
  const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } }).gif().toBuffer();
  t.equal(decodeSmall(gif), undefined, 'a GIF');
  const palette = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } }).png({ palette: true }).toBuffer();
  t.equal(decodeSmall(palette), undefined, 'a palette PNG');
  const deep = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } }).toColourspace('rgb16').png().toBuffer();
  t.equal(decodeSmall(deep), undefined, 'a 16-bit PNG');
  t.equal(decodeSmall(Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3])), undefined, 'a truncated PNG');
  t.equal(decodeSmall(Buffer.from([0xff, 0xd8, 0xff, 0, 0])), undefined, 'a truncated JPEG');
});

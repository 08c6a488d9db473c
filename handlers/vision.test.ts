// The JavaScript fast path for small images must see the same pixels sharp sees; the tensor and
// top-k helpers must give what the plain computation gives.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { decodeSmall, headerSize, toChw, toGrey, topK } from './vision.js';

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
  const big = await sharp({ create: { width: 400, height: 400, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 60 } } })
    .png()
    .toBuffer();
  t.equal(decodeSmall(big), undefined, 'a file over 32 KB');
  const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } })
    .gif()
    .toBuffer();
  t.equal(decodeSmall(gif), undefined, 'a GIF');
  // A small file may declare a large image (review-16 F7: 5.7 KB, 1024x1024, 49 ms decoded here).
  const plain = await sharp({ create: { width: 1024, height: 1024, channels: 4, background: '#000' } })
    .png()
    .toBuffer();
  t.ok(decodeSmall(plain), 'a small file of a megapixel: decoded');
  t.equal(decodeSmall(plain, 28 * 28), undefined, 'not when the caller wants 28x28 at most');
  const jpg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#000' } })
    .jpeg()
    .toBuffer();
  t.equal(decodeSmall(jpg, 28 * 28), undefined, 'nor a JPEG larger than that');
  const palette = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } })
    .png({ palette: true })
    .toBuffer();
  t.equal(decodeSmall(palette), undefined, 'a palette PNG');
  const deep = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } })
    .toColourspace('rgb16')
    .png()
    .toBuffer();
  t.equal(decodeSmall(deep), undefined, 'a 16-bit PNG');
  t.equal(decodeSmall(Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3])), undefined, 'a truncated PNG');
  t.equal(decodeSmall(Buffer.from([0xff, 0xd8, 0xff, 0, 0])), undefined, 'a truncated JPEG');
  // Black compresses ~1000:1: 26 KB of PNG is 27 MB of pixels (3000 x 3000), 0.3 s of JavaScript
  // on the worker's thread. Just over the megapixel is enough to be refused (and is 40x quicker to make).
  const blackPng = await sharp({ create: { width: 1100, height: 1000, channels: 3, background: '#000' } })
    .png({ compressionLevel: 9 })
    .toBuffer();
  t.ok(blackPng.length <= 32 * 1024, `a small file (${blackPng.length} bytes)`);
  t.equal(decodeSmall(blackPng), undefined, 'over a megapixel');
  const blackJpeg = await sharp({ create: { width: 1100, height: 1000, channels: 3, background: '#000' } })
    .jpeg()
    .toBuffer();
  t.ok(blackJpeg.length <= 32 * 1024, `a small file (${blackJpeg.length} bytes)`);
  t.equal(decodeSmall(blackJpeg), undefined, 'a JPEG over a megapixel');
});

t.test('toChw: planar floats, (v / 255 - mean) / std, as computed directly', async (t) => {
  const pixels = 300;
  const rgb = Buffer.from(Array.from({ length: pixels * 3 }, (_, i) => (i * 37) % 256));
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const expected = new Float32Array(pixels * 3);
  for (let c = 0; c < 3; c++) for (let p = 0; p < pixels; p++) expected[c * pixels + p] = (rgb[p * 3 + c]! / 255 - mean[c]!) / std[c]!;
  t.same(toChw(rgb, pixels, mean, std), expected, 'the same float32 values');
  const into = new Float32Array(pixels * 3 + 4);
  t.equal(toChw(rgb, pixels, mean, std, into.subarray(2, 2 + pixels * 3)).buffer, into.buffer, 'written into the given view');
  t.same(into.subarray(2, 2 + pixels * 3), expected);
});

t.test('topK: the k most probable, largest first, ties in index order, as a stable sort gives them', async (t) => {
  const sorted = (probs: Float32Array, k: number): string[] =>
    Array.from(probs.keys())
      .sort((a, b) => probs[b]! - probs[a]!)
      .slice(0, k)
      .map(String);
  let seed = 7;
  const random = (): number => (seed = (seed * 16807) % 2147483647) / 2147483647;
  for (let round = 0; round < 50; round++) {
    // Values from a few levels only, so that ties are common.
    const probs = Float32Array.from({ length: 1 + Math.floor(random() * 40) }, () => Math.floor(random() * 6) / 6);
    for (const k of [1, 3, 5, 50]) t.same([...topK(probs, k).keys()], sorted(probs, k), `round ${round}, k ${k}`);
  }
  t.same(
    [...topK(Float32Array.from([0.1, 0.7, 0.2]), 2, { 1: 'cat', 2: 'dog' })],
    [
      ['cat', Float32Array.from([0.7])[0]],
      ['dog', Float32Array.from([0.2])[0]],
    ],
    'labels from the mapping',
  );
});

t.test("headerSize reads a JPEG's or PNG's size as sharp's metadata does, and leaves anything else to sharp", async (t) => {
  const base = sharp({ create: { width: 97, height: 61, channels: 3, background: { r: 10, g: 200, b: 30 } } });
  const files: Array<[string, Buffer]> = [
    ['baseline JPEG', await base.clone().jpeg().toBuffer()],
    ['progressive JPEG', await base.clone().jpeg({ progressive: true }).toBuffer()],
    ['JPEG with EXIF and ICC', await base.clone().withMetadata({ orientation: 6 }).jpeg().toBuffer()],
    ['PNG', await base.clone().png().toBuffer()],
    ['grey PNG with alpha', await base.clone().greyscale().ensureAlpha().png().toBuffer()],
  ];
  for (const [what, bytes] of files) {
    const meta = await sharp(bytes).metadata();
    t.same(headerSize(bytes), { width: meta.width, height: meta.height }, what);
  }
  const jpeg = files[0]![1];
  t.equal(headerSize(await base.clone().webp().toBuffer()), undefined, 'WebP: sharp reads it');
  t.equal(headerSize(jpeg.subarray(0, 20)), undefined, 'a JPEG cut before its frame header');
  t.equal(headerSize(Buffer.from([0xff, 0xd8, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0])), undefined, 'garbage after the JPEG start');
  const zeroWidth = Buffer.from(await base.clone().png().toBuffer());
  zeroWidth.writeUInt32BE(0, 16);
  t.equal(headerSize(zeroWidth), undefined, 'a PNG claiming width 0');
});

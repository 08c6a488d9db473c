// handlers/png.ts sees the pixels sharp (libpng) sees, for each colour type it decodes and images
// whose rows use every filter; what it does not decode (interlaced, 16-bit, palette, broken, data
// inflating past the declared size) it leaves to sharp.
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import t from 'tap';
import { decodePng8 } from './png.js';

const SIDE = 37;

/** SIDE x SIDE pixels of `channels` samples whose rows differ in kind, so that libpng filters rows differently. */
function pixels(channels: number): Buffer {
  const data = Buffer.alloc(SIDE * SIDE * channels);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE * channels; x++) {
      const i = y * SIDE * channels + x;
      data[i] = y % 4 === 0 ? (x * 7 + y) & 255 : y % 4 === 1 ? (y * 13) & 255 : y % 4 === 2 ? (x * x + y * 3) & 255 : (Math.sin(x * y) * 127 + 128) & 255;
    }
  }
  return data;
}

t.test('grey, grey and alpha, RGB and RGBA PNGs decode to the samples they were made of, every row filter undone', async (t) => {
  for (const channels of [1, 2, 3, 4] as const) {
    const raw = pixels(channels);
    const image = sharp(raw, { raw: { width: SIDE, height: SIDE, channels } });
    // sharp writes one or two channels as RGB unless told they are grey.
    const png = await (channels < 3 ? image.toColourspace('b-w') : image).png({ adaptiveFiltering: true, compressionLevel: 9 }).toBuffer();
    t.equal(png[25], [0, 4, 2, 6][channels - 1], `${channels} channels: written as PNG colour type ${png[25]}`);
    const decoded = decodePng8(png, 1 << 20);
    t.same(decoded && [decoded.width, decoded.height, decoded.channels], [SIDE, SIDE, channels], `${channels} channels: its size`);
    t.ok(decoded && Buffer.from(decoded.data).equals(raw), `${channels} channels: every sample as made`);
  }
});

t.test('what it does not decode is left to sharp', async (t) => {
  const rgb = { raw: { width: SIDE, height: SIDE, channels: 3 as const } };
  t.equal(decodePng8(await sharp(pixels(3), rgb).png({ progressive: true }).toBuffer(), 1 << 20), undefined, 'interlaced');
  t.equal(decodePng8(await sharp(pixels(3), rgb).png({ palette: true }).toBuffer(), 1 << 20), undefined, 'a palette');
  t.equal(decodePng8(await sharp(pixels(3), rgb).toColourspace('rgb16').png().toBuffer(), 1 << 20), undefined, '16-bit');
  const png = await sharp(pixels(3), rgb).png().toBuffer();
  t.equal(decodePng8(png.subarray(0, png.length - 30), 1 << 20), undefined, 'cut short');
  t.equal(decodePng8(png, SIDE * SIDE - 1), undefined, 'more pixels than allowed');
  t.equal(decodePng8(Buffer.from('not a png at all, just some text here'), 1 << 20), undefined, 'not a PNG');
});

t.test('image data that inflates past its declared size is refused, not inflated whole', async (t) => {
  // A 1x1 RGB header over 10 MB of zeros compressed to a few KB.
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0);
  ihdr.writeUInt32BE(1, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const bomb = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(10_000_000))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
  t.ok(bomb.length < 32 * 1024, `small on the wire (${bomb.length} bytes)`);
  t.equal(decodePng8(bomb, 1 << 20), undefined);
});

/** A PNG chunk, its CRC right. */
function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

t.test("a chunk whose CRC is wrong is left to sharp, which refuses the file as TorchServe's PIL does (review-15 F5)", async (t) => {
  const png = await sharp(pixels(3), { raw: { width: SIDE, height: SIDE, channels: 3 } })
    .png()
    .toBuffer();
  t.ok(decodePng8(png, 1 << 20), 'the file as written decodes');
  const idatAt = png.indexOf('IDAT', 8, 'latin1') - 4;
  for (const [what, crcAt] of [
    ['IHDR', 8 + 8 + 13],
    ['IDAT', idatAt + 8 + png.readUInt32BE(idatAt)],
  ] as const) {
    const broken = Buffer.from(png);
    broken[crcAt] = broken[crcAt]! ^ 1;
    t.equal(decodePng8(broken, 1 << 20), undefined, `${what}'s CRC wrong: not decoded here`);
    await t.rejects(sharp(broken).raw().toBuffer(), `and sharp refuses it`);
  }
});

t.test('PNGs with bytes changed or cut short: each decoded whole or left to sharp, never a throw', async (t) => {
  const png = await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 9, g: 99, b: 199 } } })
    .png()
    .toBuffer();
  let seed = 7;
  const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const outcomes = { decoded: 0, left: 0, threw: 0, misshapen: 0 };
  for (let i = 0; i < 2000; i++) {
    const bytes = Buffer.from(png);
    for (let k = 1 + Math.floor(random() * 4); k > 0; k--) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
    const input = random() < 0.2 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
    try {
      const image = decodePng8(input, 1 << 20);
      if (image === undefined) outcomes.left++;
      else if (image.data.length === image.width * image.height * image.channels) outcomes.decoded++;
      else outcomes.misshapen++;
    } catch {
      outcomes.threw++;
    }
  }
  t.same([outcomes.threw, outcomes.misshapen], [0, 0], `no throw, every image its size's samples (${JSON.stringify(outcomes)})`);
  t.ok(outcomes.decoded > 0 && outcomes.left > 0, 'some decoded (a changed pixel), some left to sharp');
});

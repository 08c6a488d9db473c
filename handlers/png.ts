/**
 * @module handlers/png
 * A small PNG's pixels in JavaScript: 8 bits a sample, not interlaced, grey, grey and alpha, RGB
 * or RGBA (what a digit or a thumbnail is). Node's zlib inflates the image data into one buffer of
 * the exact size, allocated once. fast-png's streaming inflater allocated about 130 KB of window
 * and chunk buffers a call: at mnist's 5,000 images a second those ArrayBuffers were V8's
 * "external memory pressure", a full garbage collection every ~170 images (59 in 10,000 answers,
 * `--trace-gc` in a worker), and a 28x28 digit's decode took 116 µs where it takes 20 now; a
 * mnist worker's CPU per answer halved (215-245 µs to 103-107, 2026-12-07).
 */
import { crc32, inflateSync } from 'node:zlib';

/** Pixels as interleaved bytes, `channels` per pixel. */
export interface RawImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly channels: number;
}

const SIGNATURE = 0x89504e47;
/** Samples a pixel has, by PNG colour type (palette, 3, is not decoded here). */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };

/** What a PNG's IHDR chunk says, as stored (a width or height of 0 included). */
export interface PngHeader {
  readonly width: number;
  readonly height: number;
  readonly depth: number;
  readonly colourType: number;
  readonly compression: number;
  readonly filter: number;
  readonly interlace: number;
}

/** The IHDR of a file that starts as a PNG does; undefined for any other file, or one cut short in it. */
export function pngHeader(bytes: Buffer): PngHeader | undefined {
  if (bytes.length < 29 || bytes.readUInt32BE(0) !== SIGNATURE || bytes.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  return {
    width: bytes.readUInt32BE(16),
    height: bytes.readUInt32BE(20),
    depth: bytes[24]!,
    colourType: bytes[25]!,
    compression: bytes[26]!,
    filter: bytes[27]!,
    interlace: bytes[28]!,
  };
}

/**
 * The image, or undefined for what this does not decode (another bit depth, a palette, interlace,
 * a broken file): the caller then has sharp decode it. At most `maxPixels` pixels.
 */
export function decodePng8(bytes: Buffer, maxPixels: number): RawImage | undefined {
  const header = pngHeader(bytes);
  if (header === undefined) return undefined;
  const { width, height, depth, compression, filter, interlace } = header;
  const channels = CHANNELS[header.colourType];
  if (channels === undefined || depth !== 8 || compression !== 0 || filter !== 0 || interlace !== 0) return undefined;
  if (width === 0 || height === 0 || width * height > maxPixels) return undefined;
  const compressed = idat(bytes);
  if (compressed === undefined) return undefined;
  const stride = width * channels;
  const size = height * (stride + 1);
  let filtered: Buffer;
  try {
    filtered = inflateSync(compressed, { chunkSize: Math.max(64, size), maxOutputLength: size });
  } catch {
    return undefined;
  }
  if (filtered.length !== size) return undefined;
  const data = unfilter(filtered, height, stride, channels);
  return data && { data, width, height, channels };
}

/**
 * The chunks read here: their CRCs are checked, as libpng (sharp, image_classifier's decoder)
 * checks them. (PIL, TorchServe's, checks the CRCs of the chunks before the image data, not
 * IDAT's: here a file sharp refuses is refused whichever handler reads it.)
 */
const CHECKED = new Set(['IHDR', 'IDAT', 'IEND']);

/**
 * The IDAT chunks' data, joined; undefined when a chunk runs past the file, none is there, or a
 * chunk read here fails its CRC (sharp then refuses the file: review-15 F5 found a digit with a
 * broken CRC answered here and refused by image_classifier).
 */
function idat(bytes: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  for (let at = 8; at + 12 <= bytes.length; ) {
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString('latin1', at + 4, at + 8);
    if (at + 12 + length > bytes.length) return undefined;
    if (CHECKED.has(type) && crc32(bytes.subarray(at + 4, at + 8 + length)) !== bytes.readUInt32BE(at + 8 + length)) return undefined;
    if (type === 'IDAT') parts.push(bytes.subarray(at + 8, at + 8 + length));
    if (type === 'IEND') break;
    at += 12 + length;
  }
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

/** The rows without their filter bytes, each filter undone (PNG's five); undefined for an unknown filter. */
function unfilter(filtered: Buffer, height: number, stride: number, bpp: number): Uint8Array | undefined {
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const type = filtered[y * (stride + 1)]!;
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const up = row - stride;
    for (let x = 0; x < stride; x++) {
      const raw = filtered[src + x]!;
      const a = x >= bpp ? out[row + x - bpp]! : 0;
      const b = y > 0 ? out[up + x]! : 0;
      const c = x >= bpp && y > 0 ? out[up + x - bpp]! : 0;
      switch (type) {
        case 0:
          out[row + x] = raw;
          break;
        case 1:
          out[row + x] = raw + a;
          break;
        case 2:
          out[row + x] = raw + b;
          break;
        case 3:
          out[row + x] = raw + ((a + b) >> 1);
          break;
        case 4:
          out[row + x] = raw + paeth(a, b, c);
          break;
        default:
          return undefined;
      }
    }
  }
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/**
 * @module handlers/vision
 * What the image handlers share, as TorchServe's vision_handler: decoding with sharp (one libvips
 * thread per worker process, no cache: the workers already use the cores in parallel) or, for
 * small images, in JavaScript; the ImageNet transform; the softmax / top-k of classifiers. Not a
 * handler itself; handler authors import it as `tsserve/vision`.
 */
import jpeg from 'jpeg-js';
import type { Sharp } from 'sharp';
import { decodePng8, pngHeader, type RawImage } from './png.js';
import {
  classLabel,
  eachInput,
  flattenTensor,
  imagePixelLimit,
  type InputValue,
  ort,
  payloadBytes,
  PredictionError,
  requestPayload,
  type RequestInput,
  type TensorValues,
} from '../src/index.js';

type SharpModule = typeof import('sharp');
let sharpModule: Promise<SharpModule> | undefined;

/**
 * sharp, loaded on first use: libvips adds about 28 MB to a worker, which a model whose inputs all
 * take the JavaScript path (decodeSmall) never needs.
 */
function loadSharp(): Promise<SharpModule> {
  sharpModule ??= import('sharp').then((m) => {
    m.default.concurrency(1);
    m.default.cache(false);
    return m;
  });
  return sharpModule;
}

export type { RawImage } from './png.js';

const SMALL_IMAGE_BYTES = 32 * 1024;
/** A small file may still declare a huge image; the JavaScript decoders take none over this. */
const SMALL_IMAGE_PIXELS = 1024 * 1024;

/**
 * Decodes a small 8-bit PNG or a JPEG in JavaScript (handlers/png.ts, jpeg-js). For a thumbnail such as
 * a 28x28 digit, one sharp pipeline costs 0.7-1.2 ms, mostly per-call overhead, where these
 * decoders take 0.1 ms (bench/README.md). Anything else (larger files, other formats, palette or
 * 16-bit or interlaced PNGs, more than a megapixel or than `maxPixels`, data these decoders refuse) answers
 * undefined: the caller goes through sharp. A caller that wants one size only (mnist's 28x28) says
 * so in `maxPixels`: a small file may declare a large image, whose decoding here it would throw away.
 */
export function decodeSmall(bytes: Buffer, maxPixels = SMALL_IMAGE_PIXELS): RawImage | undefined {
  if (bytes.length > SMALL_IMAGE_BYTES) return undefined;
  const limit = Math.min(maxPixels, SMALL_IMAGE_PIXELS);
  try {
    if (bytes[0] === 0x89 && bytes[1] === 0x50) return decodePng8(bytes, limit);
    if (bytes[0] === 0xff && bytes[1] === 0xd8) {
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxResolutionInMP: limit / 1e6, maxMemoryUsageInMB: 64 });
      return { data: img.data, width: img.width, height: img.height, channels: 3 };
    }
  } catch {
    // sharp decides, and words the error
  }
  return undefined;
}

/** One byte of luminance per pixel (Rec. 601 weights for colour, the first channel otherwise). */
export function toGrey(image: RawImage): Uint8Array {
  const { data, channels } = image;
  const pixels = image.width * image.height;
  if (channels === 1) return data;
  const grey = new Uint8Array(pixels);
  for (let p = 0, i = 0; p < pixels; p++, i += channels) {
    grey[p] = channels >= 3 ? Math.round(0.299 * data[i]! + 0.587 * data[i + 1]! + 0.114 * data[i + 2]!) : data[i]!;
  }
  return grey;
}

export interface ImageTransform {
  /** Short side after resize. */
  readonly resize: number;
  /** Side of the centre crop. */
  readonly crop: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/** torchvision's Resize(256), CenterCrop(224), Normalize(ImageNet mean and std). */
export const IMAGENET: ImageTransform = { resize: 256, crop: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/**
 * An RGB image as interleaved bytes; a file sharp cannot read is a 400, and so is an image over
 * limit_max_image_pixels' limit (imagePixelLimit), refused before it is decoded.
 */
export async function decodeRgb(bytes: Buffer, shape: (image: Sharp) => Sharp = (i) => i): Promise<{ data: Buffer; width: number; height: number }> {
  refuseOverLimit(headerSize(bytes));
  return decodeWithSharp(bytes, shape);
}

/** decodeRgb once the size has passed refuseOverLimit; sharp applies the limit to what it opens. */
async function decodeWithSharp(bytes: Buffer, shape: (image: Sharp) => Sharp): Promise<{ data: Buffer; width: number; height: number }> {
  const { default: sharp } = await loadSharp();
  try {
    const { data, info } = await shape(sharp(bytes, { failOn: 'error', limitInputPixels: imagePixelLimit() }).removeAlpha().toColourspace('srgb'))
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw new PredictionError(`Invalid image: ${(err as Error).message}`, 400);
  }
}

/** The header says what sharp would find out only when it opens the file: a clearer message. */
function refuseOverLimit(size: { width: number; height: number } | undefined): void {
  const limit = imagePixelLimit();
  if (limit === false || !size || size.width * size.height <= limit) return;
  throw new PredictionError(
    `Invalid image: ${size.width} x ${size.height} pixels, over the limit of ${limit} (PIL's; limit_max_image_pixels=false lifts it)`,
    400,
  );
}

/**
 * torchvision's Resize(t.resize) then CenterCrop(t.crop), normalised into planar RGB (CHW).
 * One sharp pipeline holds one resize, so the crop is an extract after it, placed as torchvision
 * places it (the resized long side truncated, the crop offset rounded).
 */
export async function imageToChw(bytes: Buffer, t: ImageTransform, out?: Float32Array): Promise<Float32Array> {
  const { width, height } = await imageSize(bytes);
  refuseOverLimit({ width, height });
  const scale = t.resize / Math.min(width, height);
  const w = width <= height ? t.resize : Math.trunc(width * scale);
  const h = height < width ? t.resize : Math.trunc(height * scale);
  const { data } = await decodeWithSharp(bytes, (image) =>
    image
      .resize(w, h, { fit: 'fill', kernel: 'linear' })
      .extract({ left: Math.round((w - t.crop) / 2), top: Math.round((h - t.crop) / 2), width: t.crop, height: t.crop }),
  );
  return toChw(data, t.crop * t.crop, t.mean, t.std, out);
}

/**
 * Width and height from the file's header; an unreadable file is a 400. JPEG and PNG headers are
 * read here: asking sharp is a pipeline of its own, 0.3 ms of the ~6 ms a 640 x 480 JPEG costs.
 */
async function imageSize(bytes: Buffer): Promise<{ width: number; height: number }> {
  const known = headerSize(bytes);
  if (known) return known;
  const { default: sharp } = await loadSharp();
  const meta = await sharp(bytes)
    .metadata()
    .catch((err: Error) => {
      throw new PredictionError(`Invalid image: ${err.message}`, 400);
    });
  if (!meta.width || !meta.height) throw new PredictionError('Invalid image: no size in its header', 400);
  return { width: meta.width, height: meta.height };
}

/** A PNG's or JPEG's size as its header states it (the stored size, as sharp's metadata gives it), else undefined. */
export function headerSize(bytes: Buffer): { width: number; height: number } | undefined {
  const png = pngHeader(bytes);
  if (png) return nonZero(png.width, png.height);
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let at = 2;
  while (at + 9 <= bytes.length) {
    if (bytes[at] !== 0xff) return undefined;
    const marker = bytes[at + 1]!;
    if (marker === 0xff) {
      at++;
      continue;
    } // fill byte
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9)) {
      at += 2;
      continue;
    } // no length
    // SOF0-SOF15 hold the frame's size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return nonZero(bytes.readUInt16BE(at + 7), bytes.readUInt16BE(at + 5));
    }
    at += 2 + bytes.readUInt16BE(at + 2);
  }
  return undefined;
}

function nonZero(width: number, height: number): { width: number; height: number } | undefined {
  return width > 0 && height > 0 ? { width, height } : undefined;
}

/**
 * Every request's image through `transform`, stacked into one NCHW tensor. A request may instead
 * send the image as a nested list of numbers, already transformed (CHW): TorchServe's vision
 * handler takes a list as the tensor itself, which is how KServe v2 clients send FP32 inputs.
 */
export async function imageBatch(batch: RequestInput[], transform: ImageTransform): Promise<ort.Tensor> {
  const { crop } = transform;
  const pixels = crop * crop * 3;
  const dims = [batch.length, 3, crop, crop];
  const only = batch.length === 1 ? requestPayload(batch[0]!) : undefined;
  // A lone tensor sent in binary form (the kservev2 envelope's Float32Array) is the input as it came.
  if (only instanceof Float32Array && only.length === pixels) return new ort.Tensor('float32', only, dims);
  const data = new Float32Array(batch.length * pixels);
  await eachInput(batch, async (row, i) => {
    const payload = requestPayload(row);
    const out = data.subarray(i * pixels, (i + 1) * pixels);
    if (!copyTensorPayload(payload, out, `3x${crop}x${crop}`)) await imageToChw(payloadBytes(payload), transform, out);
  });
  return new ort.Tensor('float32', data, dims);
}

/**
 * A request's payload sent as a tensor into `out`, which it must fill exactly (`shape` words the
 * error): a nested list of numbers (JSON, a KServe v2 FP32 input) or a typed array (the kservev2
 * envelope's values, from JSON or binary form). False, with nothing done, for anything else: an
 * image's bytes or base64.
 */
export function copyTensorPayload(payload: InputValue, out: Float32Array, shape: string): boolean {
  if (Array.isArray(payload)) copyTensor(payload, out, shape);
  else if (isTensorValues(payload)) copyValues(payload, out, shape);
  else return false;
  return true;
}

/** Values of a tensor sent in binary form (any typed array but bytes, which are an image). */
function isTensorValues(value: unknown): value is Exclude<TensorValues, Uint8Array> {
  return ArrayBuffer.isView(value) && !(value instanceof Uint8Array) && !(value instanceof DataView);
}

function copyValues(values: Exclude<TensorValues, Uint8Array>, out: Float32Array, shape: string): void {
  if (values.length !== out.length) throw new PredictionError(`Expected an image, or a ${shape} tensor (got ${values.length} values)`, 400);
  if (values instanceof BigInt64Array || values instanceof BigUint64Array) out.set(Array.from(values, Number));
  else out.set(values);
}

/**
 * A tensor sent as a nested list of numbers (a KServe v2 FP32 input, a JSON array) into `out`,
 * which it must fill exactly; `shape` words the error.
 */
export function copyTensor(values: unknown[], out: Float32Array, shape: string): void {
  const flat = flattenTensor(values);
  if (flat.length !== out.length || flat.some((v) => typeof v !== 'number')) {
    throw new PredictionError(`Expected an image, or a ${shape} tensor as a nested list of numbers (got ${flat.length} values)`, 400);
  }
  out.set(flat as number[]);
}

/**
 * Interleaved RGB bytes -> planar floats, `(v / 255 - mean) / std` per channel, into `out` if
 * given. A byte has 256 values, so each channel's results are computed once into a table: one
 * lookup per pixel instead of two divisions, the same float32 values.
 */
export function toChw(
  rgb: Buffer,
  pixels: number,
  mean: readonly number[] = [0, 0, 0],
  std: readonly number[] = [1, 1, 1],
  out: Float32Array = new Float32Array(pixels * 3),
): Float32Array {
  const [r, g, b] = [0, 1, 2].map((c) => normalisedBytes(mean[c]!, std[c]!)) as [Float32Array, Float32Array, Float32Array];
  for (let p = 0, i = 0; p < pixels; p++, i += 3) {
    out[p] = r[rgb[i]!]!;
    out[pixels + p] = g[rgb[i + 1]!]!;
    out[2 * pixels + p] = b[rgb[i + 2]!]!;
  }
  return out;
}

function normalisedBytes(mean: number, std: number): Float32Array {
  const table = new Float32Array(256);
  for (let v = 0; v < 256; v++) table[v] = (v / 255 - mean) / std;
  return table;
}

export function softmax(logits: ArrayLike<number>): Float32Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const out = new Float32Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp(logits[i]! - max);
  for (let i = 0; i < out.length; i++) out[i]! /= sum;
  return out;
}

/**
 * The k most probable classes as `{label: probability}`, most probable first (a Map, so that
 * labels that are class indexes keep this order in the JSON answer).
 */
export function topK(probs: Float32Array, k: number, mapping?: Record<string, string>): Map<string, number> {
  return new Map(topIndexes(probs, k).map((i) => [classLabel(mapping, i), probs[i]!]));
}

/**
 * The indexes of the k largest values, largest first, ties in index order (as a stable sort
 * would give them), found in one pass that keeps the k best so far: sorting all 1000 ImageNet
 * classes for 5 of them cost more than the rest of postprocessing.
 */
function topIndexes(values: Float32Array, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (best.length === k && !(v > values[best[k - 1]!]!)) continue;
    let at = best.length;
    while (at > 0 && v > values[best[at - 1]!]!) at--;
    best.splice(at, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}

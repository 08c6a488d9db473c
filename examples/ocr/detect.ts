/**
 * Text detection with PP-OCRv4's det model: where the lines of text are.
 *
 * The image is scaled so its long side is at most 960 px and both sides are multiples of 32, and
 * normalised with the ImageNet mean and std. The model answers a text probability per pixel.
 * Pixels above 0.3 are grouped into connected regions; a region whose mean probability is at
 * least 0.6 is a line, its box grown by PaddleOCR's unclip (offset = area x 1.5 / perimeter) and
 * scaled back to the image as sent.
 */
import sharp from 'sharp';
import { ort } from 'tsserve';
import { toChw } from 'tsserve/vision';

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];
const LONG_SIDE = 960;
const PIXEL_THRESHOLD = 0.3;
const BOX_THRESHOLD = 0.6;
const UNCLIP_RATIO = 1.5;
const MIN_SIDE = 3;

/** An axis-aligned box in the pixels of the image as sent. */
export interface Box {
  readonly x1: number;
  readonly y1: number;
  readonly x2: number;
  readonly y2: number;
}

export interface RgbImage {
  readonly data: Buffer;
  readonly width: number;
  readonly height: number;
}

export async function detectLines(session: ort.InferenceSession, image: RgbImage): Promise<Box[]> {
  const [w, h] = detectionSize(image.width, image.height);
  const resized = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(w, h, { fit: 'fill' })
    .raw()
    .toBuffer();
  const input = new ort.Tensor('float32', toChw(resized, w * h, MEAN, STD), [1, 3, h, w]);
  const out = await session.run({ [session.inputNames[0]!]: input });
  const prob = out[session.outputNames[0]!]!.data as Float32Array;
  return regions(prob, w, h)
    .filter((r) => r.score >= BOX_THRESHOLD)
    .map((r) => unclip(r, w, h))
    .map((b) => scaleBox(b, image.width / w, image.height / h))
    .filter((b) => b.x2 - b.x1 >= MIN_SIDE && b.y2 - b.y1 >= MIN_SIDE);
}

/** Long side at most 960 (never enlarged), both sides rounded to a multiple of 32. */
function detectionSize(width: number, height: number): [number, number] {
  const scale = Math.min(1, LONG_SIDE / Math.max(width, height));
  const round32 = (v: number): number => Math.max(32, Math.round((v * scale) / 32) * 32);
  return [round32(width), round32(height)];
}

interface Region extends Box {
  readonly score: number;
}

/** 4-connected regions of pixels above the threshold, with their boxes and mean probability. */
function regions(prob: Float32Array, w: number, h: number): Region[] {
  const label = new Int32Array(w * h);
  const stack = new Int32Array(w * h);
  const found: Region[] = [];
  for (let start = 0; start < prob.length; start++) {
    if (label[start] !== 0 || prob[start]! <= PIXEL_THRESHOLD) continue;
    const id = found.length + 1;
    let top = 0;
    stack[top++] = start;
    label[start] = id;
    let [x1, y1, x2, y2, sum, count] = [w, h, 0, 0, 0, 0];
    while (top > 0) {
      const p = stack[--top]!;
      const x = p % w;
      const y = (p - x) / w;
      sum += prob[p]!;
      count++;
      if (x < x1) x1 = x;
      if (x > x2) x2 = x;
      if (y < y1) y1 = y;
      if (y > y2) y2 = y;
      if (x > 0) top = visit(p - 1, id, top);
      if (x < w - 1) top = visit(p + 1, id, top);
      if (y > 0) top = visit(p - w, id, top);
      if (y < h - 1) top = visit(p + w, id, top);
    }
    found.push({ x1, y1, x2: x2 + 1, y2: y2 + 1, score: sum / count });
  }
  return found;

  function visit(q: number, id: number, top: number): number {
    if (label[q] !== 0 || prob[q]! <= PIXEL_THRESHOLD) return top;
    label[q] = id;
    stack[top] = q;
    return top + 1;
  }
}

/** PaddleOCR's unclip for a rectangle: every side moves out by area x ratio / perimeter. */
function unclip(b: Box, w: number, h: number): Box {
  const bw = b.x2 - b.x1;
  const bh = b.y2 - b.y1;
  const d = (bw * bh * UNCLIP_RATIO) / (2 * (bw + bh));
  return { x1: Math.max(0, b.x1 - d), y1: Math.max(0, b.y1 - d), x2: Math.min(w, b.x2 + d), y2: Math.min(h, b.y2 + d) };
}

function scaleBox(b: Box, sx: number, sy: number): Box {
  return { x1: Math.round(b.x1 * sx), y1: Math.round(b.y1 * sy), x2: Math.round(b.x2 * sx), y2: Math.round(b.y2 * sy) };
}

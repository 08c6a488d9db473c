/**
 * Reading the lines found by detection: PP-OCR's direction classifier turns a line that is upside
 * down, then PP-OCRv4's recogniser reads every line of the image in one batch.
 *
 * Both take a line 48 px high, normalised to [-1, 1]. The classifier looks at the first 192 px
 * (narrower lines padded on the right); the recogniser takes any width, so lines are padded to the widest. Its
 * output is a CTC sequence: the most probable class at each step, repeats and blanks (0) dropped,
 * class k the k-th line of the dictionary, the class after the last one a space.
 */
import sharp from 'sharp';
import { ort } from 'tsserve';
import type { Box, RgbImage } from './detect.js';

const HEIGHT = 48;
const CLS_WIDTH = 192;
const MAX_REC_WIDTH = 1920;
const UPSIDE_DOWN = 0.9;

export interface Line {
  readonly text: string;
  readonly confidence: number;
}

export interface Recognizer {
  readonly rec: ort.InferenceSession;
  readonly cls: ort.InferenceSession;
  /** The dictionary, one character per entry; class k is `dictionary[k - 1]`. */
  readonly dictionary: readonly string[];
}

export async function readLines(models: Recognizer, image: RgbImage, boxes: readonly Box[]): Promise<Line[]> {
  if (boxes.length === 0) return [];
  let crops = await Promise.all(boxes.map((b) => cropLine(image, b)));
  const flip = await upsideDown(models.cls, crops);
  crops = await Promise.all(crops.map((c, i) => (flip[i] ? rotate180(c) : c)));
  return recognise(models, crops);
}

interface Crop {
  readonly data: Buffer;
  readonly width: number;
}

/** The box cut out of the image, scaled to 48 px high (vertical lines turned upright first). */
async function cropLine(image: RgbImage, b: Box): Promise<Crop> {
  let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).extract({
    left: b.x1,
    top: b.y1,
    width: b.x2 - b.x1,
    height: b.y2 - b.y1,
  });
  const [w, h] = [b.x2 - b.x1, b.y2 - b.y1];
  const vertical = h >= 1.5 * w;
  if (vertical) pipeline = sharp(await pipeline.raw().toBuffer(), { raw: { width: w, height: h, channels: 3 } }).rotate(-90);
  const [lw, lh] = vertical ? [h, w] : [w, h];
  const width = Math.min(MAX_REC_WIDTH, Math.max(1, Math.round((HEIGHT * lw) / lh)));
  const data = await pipeline.resize(width, HEIGHT, { fit: 'fill' }).raw().toBuffer();
  return { data, width };
}

async function rotate180(c: Crop): Promise<Crop> {
  return {
    data: await sharp(c.data, { raw: { width: c.width, height: HEIGHT, channels: 3 } })
      .rotate(180)
      .raw()
      .toBuffer(),
    width: c.width,
  };
}

/** Which crops the classifier finds turned by 180 degrees. */
async function upsideDown(cls: ort.InferenceSession, crops: readonly Crop[]): Promise<boolean[]> {
  const input = planarBatch(crops, CLS_WIDTH);
  const out = await cls.run({ [cls.inputNames[0]!]: input });
  const p = out[cls.outputNames[0]!]!.data as Float32Array;
  return crops.map((_, i) => p[i * 2 + 1]! > UPSIDE_DOWN);
}

async function recognise(models: Recognizer, crops: readonly Crop[]): Promise<Line[]> {
  const width = Math.max(...crops.map((c) => c.width));
  const out = await models.rec.run({ [models.rec.inputNames[0]!]: planarBatch(crops, width) });
  const probs = out[models.rec.outputNames[0]!]!;
  const [, steps, classes] = probs.dims.map(Number) as [number, number, number];
  const data = probs.data as Float32Array;
  return crops.map((_, i) => ctcDecode(data.subarray(i * steps * classes, (i + 1) * steps * classes), steps, classes, models.dictionary));
}

/** Greedy CTC: best class per step, repeats and blanks dropped; confidence the mean kept probability. */
function ctcDecode(p: Float32Array, steps: number, classes: number, dictionary: readonly string[]): Line {
  let text = '';
  let sum = 0;
  let kept = 0;
  let previous = -1;
  for (let t = 0; t < steps; t++) {
    let best = 0;
    let max = -Infinity;
    for (let c = 0, o = t * classes; c < classes; c++, o++) {
      if (p[o]! > max) [max, best] = [p[o]!, c];
    }
    if (best !== 0 && best !== previous) {
      text += best - 1 < dictionary.length ? dictionary[best - 1] : ' ';
      sum += max;
      kept++;
    }
    previous = best;
  }
  return { text: text.trim(), confidence: kept === 0 ? 0 : sum / kept };
}

/** Crops as one NCHW batch of `width`, normalised to [-1, 1], padded with 0 on the right. */
function planarBatch(crops: readonly Crop[], width: number): ort.Tensor {
  const plane = HEIGHT * width;
  const data = new Float32Array(crops.length * 3 * plane);
  crops.forEach((crop, n) => {
    const w = Math.min(crop.width, width);
    for (let c = 0; c < 3; c++) {
      const base = (n * 3 + c) * plane;
      for (let y = 0; y < HEIGHT; y++) {
        const src = y * crop.width * 3 + c;
        const dst = base + y * width;
        for (let x = 0; x < w; x++) data[dst + x] = crop.data[src + x * 3]! / 127.5 - 1;
      }
    }
  });
  return new ort.Tensor('float32', data, [crops.length, 3, HEIGHT, width]);
}

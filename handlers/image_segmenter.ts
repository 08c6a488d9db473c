/**
 * @module handlers/image_segmenter
 * `--handler image_segmenter`, as TorchServe's: the image_classifier's transform (short side 256,
 * centre crop 224, ImageNet normalisation); the model answers class scores per pixel [N,K,H,W]
 * (its output named `out` when it has one, as torchvision's segmentation models). The answer, per
 * image, is TorchServe's: for every pixel its most probable class and that probability,
 * `[[[class, probability], ...W], ...H]`.
 *
 * Input:  curl -T street.jpg http://127.0.0.1:8080/predictions/fcn
 * Output: [[[0, 0.98], [0, 0.97], ...], ...]   (224 rows of 224 [class, probability] pairs)
 */
import { BaseHandler, type ort, type HandlerOutput, type RequestInput } from '../src/index.js';
import { IMAGENET, imageBatch } from './vision.js';

export default class ImageSegmenter extends BaseHandler {
  override async preprocess(batch: RequestInput[]): Promise<ort.Tensor> {
    return imageBatch(batch, IMAGENET);
  }

  override async inference(input: ort.Tensor): Promise<ort.Tensor> {
    const result = await this.session.run({ [this.session.inputNames[0]!]: input });
    return result.out ?? result[this.session.outputNames[0]!]!;
  }

  override async postprocess(output: ort.Tensor): Promise<HandlerOutput[]> {
    const [n, k, h, w] = output.dims.map(Number) as [number, number, number, number];
    const scores = output.data as Float32Array;
    return Array.from({ length: n }, (_, i) => pixelClasses(scores.subarray(i * k * h * w, (i + 1) * k * h * w), k, h, w));
  }
}

/** Softmax over the K class planes at each pixel; rows of [argmax, its probability]. */
function pixelClasses(planes: Float32Array, k: number, h: number, w: number): Array<Array<[number, number]>> {
  const plane = h * w;
  const rows: Array<Array<[number, number]>> = [];
  for (let y = 0; y < h; y++) {
    const row: Array<[number, number]> = [];
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      let best = 0;
      let max = -Infinity;
      for (let c = 0; c < k; c++) {
        const v = planes[c * plane + p]!;
        if (v > max) [max, best] = [v, c];
      }
      let sum = 0;
      for (let c = 0; c < k; c++) sum += Math.exp(planes[c * plane + p]! - max);
      row.push([best, 1 / sum]);
    }
    rows.push(row);
  }
  return rows;
}

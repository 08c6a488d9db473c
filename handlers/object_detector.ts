/**
 * @module handlers/object_detector
 * `--handler object_detector`, as TorchServe's: each image is read at its own size as RGB in 0..1
 * (torchvision's ToTensor, no resize, no normalisation) and run alone, as torchvision's detection
 * models take one image of any size. The model answers `boxes` [K,4] (x1, y1, x2, y2 in pixels),
 * `labels` [K] and `scores` [K] (by those names, else its first three outputs in that order).
 * Detections scoring at most `threshold` (0.5, as TorchServe) are dropped; the answer per image is
 * TorchServe's list of `{"<label>": [x1, y1, x2, y2], "score": s}`, labels named by
 * index_to_name.json when the archive has one.
 *
 * Input:  curl -T street.jpg http://127.0.0.1:8080/predictions/detector
 * Output: [{"person": [12.0, 30.5, 80.2, 190.0], "score": 0.97}, {"car": [...], "score": 0.88}]
 */
import { BaseHandler, eachInput, ort, payloadBytes, requestPayload, type HandlerOutput, type RequestInput } from '../src/index.js';
import { decodeRgb, toChw } from './vision.js';

type Detections = Record<'boxes' | 'labels' | 'scores', ort.Tensor>;

export default class ObjectDetector extends BaseHandler<ort.Tensor[], Detections[]> {
  protected threshold = 0.5;

  override async preprocess(batch: RequestInput[]): Promise<ort.Tensor[]> {
    return eachInput(batch, async (row) => {
      const { data, width, height } = await decodeRgb(payloadBytes(requestPayload(row)));
      return new ort.Tensor('float32', toChw(data, width * height), [1, 3, height, width]);
    });
  }

  override async inference(images: ort.Tensor[]): Promise<Detections[]> {
    const [boxes, labels, scores] = ['boxes', 'labels', 'scores'].map((name, i) =>
      this.session.outputNames.includes(name) ? name : this.session.outputNames[i]!,
    );
    const detections: Detections[] = [];
    for (const image of images) {
      const out = await this.session.run({ [this.session.inputNames[0]!]: image });
      detections.push({ boxes: out[boxes!]!, labels: out[labels!]!, scores: out[scores!]! });
    }
    return detections;
  }

  override async postprocess(detections: Detections[]): Promise<HandlerOutput[]> {
    return detections.map(({ boxes, labels, scores }) => {
      const box = boxes.data as Float32Array;
      const found: Array<Record<string, number[] | number>> = [];
      scores.data.forEach((score, i) => {
        if (Number(score) <= this.threshold) return;
        const label = String(labels.data[i]);
        found.push({ [this.labelOf(label)]: Array.from(box.subarray(i * 4, i * 4 + 4)), score: Number(score) });
      });
      return found;
    });
  }
}

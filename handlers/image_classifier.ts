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
import { BaseHandler, type ort, splitBatch, type HandlerOutput, type RequestInput } from '../src/index.js';
import { IMAGENET, imageBatch, softmax, topK, type ImageTransform } from './vision.js';

export default class ImageClassifier extends BaseHandler {
  protected topK = 5;
  protected transform: ImageTransform = IMAGENET;

  override async preprocess(batch: RequestInput[]): Promise<ort.Tensor> {
    return imageBatch(batch, this.transform);
  }

  override async postprocess(output: ort.Tensor): Promise<HandlerOutput[]> {
    return splitBatch(output).map((logits) => topK(softmax(logits), this.topK, this.mapping));
  }
}

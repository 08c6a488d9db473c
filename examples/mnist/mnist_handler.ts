/**
 * The handler of TorchServe's MNIST example, for tsserve: an image of a handwritten digit in
 * (white on black, any size, PNG or JPEG; bytes, base64, `{"b64": ...}` or `{"data": ...}`), the digit out.
 * As in TorchServe's, a nested list of 28 x 28 numbers (a KServe v2 FP32 input of shape
 * [1, 28, 28] or [1, 1, 28, 28], as JSON or bytes) is taken as the model's input tensor itself.
 *
 *   curl -T examples/mnist/digits/7_0.png http://127.0.0.1:8080/predictions/mnist   ->  7
 */
import { BaseHandler, ort, payloadBytes, requestPayload, splitBatch, type HandlerOutput, type RequestInput } from 'tsserve';
import { copyTensorPayload, decodeRgb, decodeSmall, toGrey } from 'tsserve/vision';

// Mean and standard deviation of the training digits (examples/mnist/train.py).
const MEAN = 0.1302;
const STD = 0.3069;
const SIDE = 28;

export default class MnistHandler extends BaseHandler {
  override async preprocess(batch: RequestInput[]): Promise<ort.Tensor> {
    const pixels = SIDE * SIDE;
    const data = new Float32Array(batch.length * pixels);
    await Promise.all(
      batch.map(async (row, i) => {
        const payload = requestPayload(row);
        if (copyTensorPayload(payload, data.subarray(i * pixels, (i + 1) * pixels), `1x${SIDE}x${SIDE}`)) return;
        const grey = await toGreyscale28(payloadBytes(payload));
        for (let p = 0; p < pixels; p++) data[i * pixels + p] = (grey[p]! / 255 - MEAN) / STD;
      }),
    );
    return new ort.Tensor('float32', data, [batch.length, 1, SIDE, SIDE]);
  }

  /** The most probable digit of each row. */
  override async postprocess(output: ort.Tensor): Promise<HandlerOutput[]> {
    return splitBatch(output).map((scores) => scores.indexOf(Math.max(...scores)));
  }
}

/**
 * A digit already 28x28 is decoded in JavaScript (0.1 ms); anything else goes through sharp, and
 * is not decoded here first (a 5.7 KB PNG of 1024x1024 took 49 ms: review-16 F7).
 */
async function toGreyscale28(bytes: Buffer): Promise<Uint8Array> {
  const small = decodeSmall(bytes, SIDE * SIDE);
  if (small && small.width === SIDE && small.height === SIDE) return toGrey(small);
  const { data } = await decodeRgb(bytes, (image) => image.resize(SIDE, SIDE, { fit: 'fill' }));
  return toGrey({ data, width: SIDE, height: SIDE, channels: 3 });
}

/**
 * The handler of TorchServe's MNIST example, for tsserve: an image of a handwritten digit in
 * (white on black, any size, PNG or JPEG), the digit out.
 *
 *   curl -T examples/mnist/digits/7_0.png http://127.0.0.1:8080/predictions/mnist   ->  7
 */
import { BaseHandler, ort, payloadBytes, requestPayload, splitBatch, type HandlerOutput, type RequestInput } from 'tsserve';
import { decodeRgb, decodeSmall, toGrey } from 'tsserve/vision';

// Mean and standard deviation of the training digits (examples/mnist/train.py).
const MEAN = 0.1302;
const STD = 0.3069;
const SIDE = 28;

export default class MnistHandler extends BaseHandler {
  override async preprocess(batch: RequestInput[]): Promise<ort.Tensor> {
    const pixels = SIDE * SIDE;
    const data = new Float32Array(batch.length * pixels);
    await Promise.all(batch.map(async (row, i) => {
      const grey = await toGreyscale28(payloadBytes(requestPayload(row)));
      for (let p = 0; p < pixels; p++) data[i * pixels + p] = (grey[p]! / 255 - MEAN) / STD;
    }));
    return new ort.Tensor('float32', data, [batch.length, 1, SIDE, SIDE]);
  }

  /** The most probable digit of each row. */
  override async postprocess(output: ort.Tensor): Promise<HandlerOutput[]> {
    return splitBatch(output).map((scores) => scores.indexOf(Math.max(...scores)));
  }
}

/** A digit already 28x28 is decoded in JavaScript (0.1 ms); anything else goes through sharp. */
async function toGreyscale28(bytes: Buffer): Promise<Uint8Array> {
  const small = decodeSmall(bytes);
  if (small && small.width === SIDE && small.height === SIDE) return toGrey(small);
  const { data } = await decodeRgb(bytes, (image) => image.resize(SIDE, SIDE, { fit: 'fill' }));
  return toGrey({ data, width: SIDE, height: SIDE, channels: 3 });
}

/**
 * The optimisation loop of style transfer, as the seed's utils.py holds it: Adam on the pixels,
 * starting from the content image. Each step runs step.onnx (losses and their gradients with
 * respect to the image); the two gradients are put on one scale by their mean magnitude at the
 * first step, weighted, and applied; pixels stay in [0, 1].
 */
import type { ort } from 'tsserve';

export interface StyleTargets {
  /** features.onnx's Gram matrices of the style image and activation of the content image. */
  readonly feeds: Record<string, ort.Tensor>;
}

export interface Progress {
  readonly step: number;
  readonly styleLoss: number;
  readonly contentLoss: number;
}

export interface StylizeOptions {
  readonly steps: number;
  /** Weight of the style term against the content term (both normalised at step 1). */
  readonly styleWeight: number;
  readonly learningRate: number;
  /** Called every `every` steps and after the last one. */
  readonly onProgress?: (p: Progress) => void;
  readonly every?: number;
}

/** Optimises `image` ([1,3,H,W] in 0..1) in place; answers the first and the last progress. */
export async function stylize(step: ort.InferenceSession, image: ort.Tensor, targets: StyleTargets, opts: StylizeOptions): Promise<[Progress, Progress]> {
  const x = image.data as Float32Array;
  const adam = new Adam(x.length, opts.learningRate);
  const direction = new Float32Array(x.length);
  let scale: [number, number] | undefined;
  let first: Progress | undefined;
  let last: Progress | undefined;
  for (let i = 1; i <= opts.steps; i++) {
    const out = await step.run({ x: image, ...targets.feeds });
    const gs = out.grad_style!.data as Float32Array;
    const gc = out.grad_content!.data as Float32Array;
    scale ??= [1 / meanAbs(gs), 1 / meanAbs(gc)];
    const [ws, wc] = [scale[0] * opts.styleWeight, scale[1]];
    for (let k = 0; k < x.length; k++) direction[k] = ws * gs[k]! + wc * gc[k]!;
    adam.apply(x, direction);
    last = { step: i, styleLoss: Number(out.loss_style!.data[0]), contentLoss: Number(out.loss_content!.data[0]) };
    first ??= last;
    if (i % (opts.every ?? 10) === 0 || i === opts.steps) opts.onProgress?.(last);
  }
  return [first!, last!];
}

function meanAbs(v: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += Math.abs(v[i]!);
  return sum / v.length || 1;
}

/** Adam (beta1 0.9, beta2 0.999), clamping the parameters to [0, 1] after each update. */
class Adam {
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private t = 0;
  private readonly lr: number;

  constructor(size: number, lr: number) {
    this.lr = lr;
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }

  apply(x: Float32Array, g: Float32Array): void {
    this.t++;
    const c1 = 1 - 0.9 ** this.t;
    const c2 = 1 - 0.999 ** this.t;
    for (let i = 0; i < x.length; i++) {
      const m = (this.m[i] = 0.9 * this.m[i]! + 0.1 * g[i]!);
      const v = (this.v[i] = 0.999 * this.v[i]! + 0.001 * g[i]! * g[i]!);
      const next = x[i]! - (this.lr * (m / c1)) / (Math.sqrt(v / c2) + 1e-8);
      x[i] = next < 0 ? 0 : Math.min(next, 1);
    }
  }
}

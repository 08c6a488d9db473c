/**
 * @module handler/explain
 * What `/explanations` and KServe's `:explain` answer for an image classifier: how much each pixel
 * matters to the score of one class. TorchServe computes this with Captum's integrated gradients,
 * which need the model's gradients; an ONNX session has none, so this is occlusion (Captum's
 * `Occlusion`, gradient-free): each square patch of the input in turn is set to the baseline 0,
 * and a pixel's attribution is how much the class score falls when its patch is hidden. The
 * answer has TorchServe's shape, the input's C x H x W as nested lists per request.
 */
import { ort } from '../runtime/onnx.js';
import { PredictionError } from './types.js';

/** The model's scores for a batch: `[batch, classes]`. */
export type Scorer = (input: ort.Tensor) => Promise<ort.Tensor>;

/**
 * Patches per side: 8 x 8 forward passes per image, whatever its size (28 px squares on a 224 px
 * input, 4 px on a 28 px digit), large enough to hide a part of the object, not only an edge.
 */
const PATCHES_PER_SIDE = 8;
/** Occluded copies scored in one session run. */
const RUN_BATCH = 16;

/**
 * Attributions for each image of `input` (float32, N x C x H x W) toward class `target`; the
 * result is one C x H x W nested list per image.
 */
export async function occlusionAttributions(input: unknown, target: number, score: Scorer): Promise<number[][][][]> {
  const [n, c, h, w] = imageDims(input);
  const data = (input as ort.Tensor).data as Float32Array;
  const size = c * h * w;
  const patches = patchGrid(h, w, Math.max(1, Math.ceil(Math.min(h, w) / PATCHES_PER_SIDE)));
  const out: number[][][][] = [];
  for (let i = 0; i < n; i++) {
    const image = data.subarray(i * size, (i + 1) * size);
    const base = (await classScores(score, [image], [c, h, w], target))[0]!;
    const occluded: number[] = [];
    for (let start = 0; start < patches.length; start += RUN_BATCH) {
      const copies = patches.slice(start, start + RUN_BATCH).map((p) => occlude(image, c, h, w, p));
      occluded.push(...(await classScores(score, copies, [c, h, w], target)));
    }
    out.push(
      toNestedChw(
        attributionMap(
          h,
          w,
          patches,
          occluded.map((s) => base - s),
        ),
        c,
        h,
        w,
      ),
    );
  }
  return out;
}

function imageDims(input: unknown): [number, number, number, number] {
  // Duck-typed: a handler may hold its own copy of onnxruntime-node's Tensor class.
  const tensor = input as Partial<ort.Tensor> | null;
  if (tensor?.type !== 'float32' || tensor.dims?.length !== 4 || !(tensor.data instanceof Float32Array)) {
    throw new PredictionError('This handler cannot explain its input: explanations need a float32 image batch (N x C x H x W)', 501);
  }
  return tensor.dims.map(Number) as [number, number, number, number];
}

interface Patch {
  readonly top: number;
  readonly left: number;
  readonly size: number;
}

function patchGrid(h: number, w: number, size: number): Patch[] {
  const patches: Patch[] = [];
  for (let top = 0; top < h; top += size) for (let left = 0; left < w; left += size) patches.push({ top, left, size });
  return patches;
}

/** Sets the square of `p` in one h x w plane to `value` (a patch at the edge is cut by it). */
function fillPatch(plane: Float32Array, h: number, w: number, p: Patch, value: number): void {
  for (let y = p.top; y < Math.min(h, p.top + p.size); y++) plane.fill(value, y * w + p.left, y * w + Math.min(w, p.left + p.size));
}

function occlude(image: Float32Array, c: number, h: number, w: number, p: Patch): Float32Array {
  const copy = image.slice();
  for (let ch = 0; ch < c; ch++) fillPatch(copy.subarray(ch * h * w, (ch + 1) * h * w), h, w, p, 0);
  return copy;
}

/** The score of `target` for each image. */
async function classScores(score: Scorer, images: Float32Array[], chw: number[], target: number): Promise<number[]> {
  const size = images[0]!.length;
  const batch = new Float32Array(images.length * size);
  for (const [i, image] of images.entries()) batch.set(image, i * size);
  return targetScores(await score(new ort.Tensor('float32', batch, [images.length, ...chw])), target);
}

/**
 * Column `target` of class scores `[batch, classes]`, one per row; a target the model does not
 * have is the client's error, an output without classes the handler's limit.
 */
export function targetScores(output: ort.Tensor, target: number): number[] {
  const classes = output.dims.length === 2 ? Number(output.dims[1]) : 0;
  if (classes === 0 || !(output.data instanceof Float32Array)) {
    throw new PredictionError('This handler cannot explain its output: explanations need class scores (batch x classes)', 501);
  }
  if (target < 0 || target >= classes) {
    throw new PredictionError(`Explanation target ${target} is not a class of this model (0..${classes - 1})`, 400);
  }
  const scores = output.data;
  return Array.from({ length: Number(output.dims[0]) }, (_, i) => scores[i * classes + target]!);
}

function attributionMap(h: number, w: number, patches: Patch[], drops: number[]): Float32Array {
  const map = new Float32Array(h * w);
  for (const [k, p] of patches.entries()) fillPatch(map, h, w, p, drops[k]!);
  return map;
}

/**
 * The same map for every channel: a patch hides all channels at once. Six significant digits:
 * a float32 score has no more, and a 3 x 224 x 224 answer stays near 3 MB of JSON.
 */
function toNestedChw(map: Float32Array, c: number, h: number, w: number): number[][][] {
  const rows = Array.from({ length: h }, (_, y) => Array.from(map.subarray(y * w, (y + 1) * w), (v) => Number(v.toPrecision(6))));
  return Array.from({ length: c }, () => rows.map((r) => r.slice()));
}

/**
 * The class to explain: the first request's `target` (a number, or its text), 0 without one, as
 * TorchServe's explain_handle reads it. A model with index_to_name.json also takes a class's
 * label (`target=tabby`), which TorchServe does not: a client that has the label of the top class
 * (what a classifier answers) can explain it without knowing its index.
 */
export function explanationTarget(row: Record<string, unknown> | undefined, labels?: Record<string, string>): number {
  const raw = row?.target;
  if (raw === undefined || raw === null || raw === '') return 0;
  const value = Buffer.isBuffer(raw) ? raw.toString('utf8') : raw;
  const target = typeof value === 'number' ? value : typeof value === 'string' ? Number(value.trim()) : Number.NaN;
  if (Number.isInteger(target)) return target;
  const labelled = labels && typeof value === 'string' ? Object.entries(labels).find(([, label]) => label === value.trim()) : undefined;
  if (labelled) return Number(labelled[0]);
  throw new PredictionError(`Explanation target must be a class index${labels ? ' or label' : ''}, got ${JSON.stringify(String(value))}`, 400);
}

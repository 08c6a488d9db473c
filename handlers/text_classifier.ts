/**
 * @module handlers/text_classifier
 * `--handler text_classifier`, after TorchServe's: UTF-8 text in; HTML tags, accents and
 * punctuation removed, lower-cased, split on white space, each word looked up in the archive's
 * `vocab.txt` (one token per line, the line number is its id; `<unk>` for unknown words and
 * `<pad>` for padding, both required). The batch goes in as `int64 [N, L]` token ids padded to its
 * longest text; the model answers logits [N, C]. The answer is every class with its softmax
 * probability, `{label: probability}` in class order, labels from index_to_name.json; explained
 * (`/explanations`), each word's importance to the request's `target` class.
 * (TorchServe reads a torchtext `source_vocab.pt`; a plain text vocabulary needs no Python.)
 *
 * Input:  curl -d "What a great movie, I loved it" http://127.0.0.1:8080/predictions/sentiment
 * Output: {"Negative": 0.02, "Positive": 0.98}
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BaseHandler,
  eachInput,
  ort,
  PredictionError,
  requestPayload,
  splitBatch,
  targetScores,
  type Context,
  type HandlerOutput,
  type InputValue,
  type RequestInput,
} from '../src/index.js';
import { softmax } from './vision.js';

export default class TextClassifier extends BaseHandler {
  protected vocab = new Map<string, number>();
  /** Token of each id: vocab.txt's lines. */
  protected tokens: string[] = [];
  protected unknownId = 0;
  protected padId = 0;

  override async initialize(context: Context): Promise<void> {
    await super.initialize(context);
    const lines = readFileSync(join(context.systemProperties.model_dir, 'vocab.txt'), 'utf8').split(/\r?\n/);
    this.tokens = lines;
    lines.forEach((token, id) => {
      if (token !== '' && !this.vocab.has(token)) this.vocab.set(token, id);
    });
    const special = (token: string): number => {
      const id = this.vocab.get(token);
      if (id === undefined) throw new Error(`vocab.txt has no ${token} token`);
      return id;
    };
    this.unknownId = special('<unk>');
    this.padId = special('<pad>');
  }

  override async preprocess(batch: RequestInput[]): Promise<ort.Tensor> {
    const rows = await eachInput(batch, (row) => words(text(requestPayload(row))).map((w) => this.vocab.get(w) ?? this.unknownId));
    const length = Math.max(1, ...rows.map((r) => r.length));
    const ids = new BigInt64Array(rows.length * length).fill(BigInt(this.padId));
    for (const [i, row] of rows.entries()) ids.set(row.map(BigInt), i * length);
    return new ort.Tensor('int64', ids, [rows.length, length]);
  }

  /**
   * TorchServe's text explanation, `{words, importances}` per request, by occlusion instead of its
   * layer integrated gradients: each word in turn becomes `<pad>`, its importance is the fall of
   * the target's score, and the importances are scaled to unit length as TorchServe's are.
   */
  override async getInsights(input: ort.Tensor, _batch: RequestInput[], target: number): Promise<HandlerOutput[]> {
    const [rows = 0, length = 0] = input.dims.map(Number);
    const ids = input.data as BigInt64Array;
    const pad = BigInt(this.padId);
    const answers: HandlerOutput[] = [];
    for (let i = 0; i < rows; i++) {
      const row = ids.subarray(i * length, (i + 1) * length);
      const used = row.findLastIndex((id) => id !== pad) + 1;
      // Copy 0 is the text as it is, copy k + 1 the text without word k.
      const copies = new BigInt64Array((used + 1) * length);
      for (let k = 0; k <= used; k++) copies.set(row, k * length);
      for (let k = 0; k < used; k++) copies[(k + 1) * length + k] = pad;
      const [whole = 0, ...without] = targetScores(await this.inference(new ort.Tensor('int64', copies, [used + 1, length])), target);
      const drops = without.map((score) => whole - score);
      const norm = Math.hypot(...drops) || 1;
      answers.push({ words: Array.from(row.subarray(0, used), (id) => this.tokens[Number(id)] ?? '<unk>'), importances: drops.map((d) => d / norm) });
    }
    return answers;
  }

  override async postprocess(output: ort.Tensor): Promise<HandlerOutput[]> {
    return splitBatch(output).map((logits) => {
      const probs = softmax(logits);
      return new Map(Array.from(probs, (p, i) => [this.labelOf(i), p]));
    });
  }
}

function text(value: InputValue): string {
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && !Array.isArray(value) && !ArrayBuffer.isView(value) && typeof value.text === 'string') return value.text;
  throw new PredictionError('Expected text: a body, a "data" field, or JSON {"text": "..."}', 400);
}

/** TorchServe's clean-up: no HTML tags, no accents, no punctuation, lower case. */
export function words(raw: string): string[] {
  return raw
    .replace(/<[^>]*>/g, ' ')
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s]/gu, ' ')
    .split(/\s+/)
    .filter((w) => w !== '');
}

/**
 * @module handlers/base_handler
 * `--handler base_handler`: TorchServe's BaseHandler as is. Each request's `data` or `body` is a
 * JSON array of numbers; the answer is the model's first output row for it.
 */
import { BaseHandler } from '../src/index.js';

export default class DefaultHandler extends BaseHandler {}

/**
 * @module tsserve
 * The public surface for handler authors: `import { BaseHandler, type Context } from 'tsserve'`.
 */
export type {
  Context,
  Handler,
  HandleFunction,
  HandlerManifest,
  HandlerOutput,
  InputValue,
  JsonValue,
  MetricsApi,
  RequestInput,
  SystemProperties,
  TensorValues,
} from './handler/types.js';
export { PredictionError } from './handler/types.js';
export { targetScores } from './handler/explain.js';
export { imagePixelLimit } from './handler/image-limit.js';
export {
  BaseHandler,
  classLabel,
  eachInput,
  flattenTensor,
  loadLabelMapping,
  MAX_TENSOR_RANK,
  payloadBytes,
  requestPayload,
  splitBatch,
} from './handler/base-handler.js';
export { batchThreads, createSession, ort, type SessionOptions } from './runtime/onnx.js';

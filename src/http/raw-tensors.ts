/**
 * @module http/raw-tensors
 * An Open Inference Protocol tensor in binary form (gRPC's `raw_input_contents`, REST's binary
 * tensor data extension) as the JSON array a v2 body carries, for a handler that reads v2 JSON
 * rather than the kservev2 envelope (which takes the bytes themselves, http/binary-tensors.ts).
 * The bytes are first checked against the tensor's shape (protocol/tensor-bytes.ts), then written
 * as JSON text straight from a typed-array view: a JS value per element (6 MB of BOOL are 6
 * million) would cost the event loop seconds and hundreds of MB for what a few bytes of shape can
 * already show to be wrong. BYTES elements are written base64-encoded, as `bytes_contents` are.
 */
import { tsError } from '../errors.js';
import { bytesJson, checkFixedSize, elementSize, elementsOf, TensorProblem, tensorValues, type TensorValues } from '../protocol/tensor-bytes.js';

/** A tensor's problem as the request's 400, naming the input; any other error as it is. */
function badTensor(name: string, err: unknown): unknown {
  return err instanceof TensorProblem ? tsError('TSS_ERR_HTTP_BAD_REQUEST', `Input "${name}": ${err.message}`) : err;
}

/** Runs `check` on input `name`'s bytes; its TensorProblem becomes the request's 400. */
export function checkedTensor<T>(name: string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw badTensor(name, err);
  }
}

/**
 * The fewest bytes the raw values take as JSON: a digit and a comma each, `true,` for BOOL, and
 * for BYTES at least as many as they take raw (base64 is 4/3, plus quotes and comma for the length).
 */
export function rawJsonFloor(datatype: string, raw: Uint8Array): number {
  if (datatype === 'BOOL') return raw.length * TRUE.length;
  const size = elementSize(datatype);
  return size ? Math.floor(raw.length / size) * 2 : raw.length;
}

/** The JSON array of the tensor's raw values, checked against its shape first; `what` names the bytes in errors. */
export function rawTensorJson(name: string, datatype: string, shape: readonly number[], raw: Uint8Array, what = 'raw_input_contents'): string {
  return checkedTensor(name, () => {
    const elements = elementsOf(shape);
    if (datatype === 'BYTES') return bytesJson(raw, elements, shape, what);
    checkFixedSize(datatype, shape, raw.length, what);
    const values = tensorValues(datatype, raw);
    if (datatype === 'BOOL') return boolsJson(values as Uint8Array);
    return `[${finite(values) ? values.join(',') : Array.from(values as Float64Array, (v) => (Number.isFinite(v) ? v : 'null')).join(',')}]`;
  });
}

/** Whether every value has a JSON number (NaN and the infinities are null there, as JSON.stringify writes them). */
function finite(values: TensorValues): boolean {
  if (!(values instanceof Float32Array || values instanceof Float64Array)) return true;
  for (const v of values) if (!Number.isFinite(v)) return false;
  return true;
}

const TRUE = Buffer.from('true,');
const FALSE = Buffer.from('false,');

function boolsJson(values: Uint8Array): string {
  const out = Buffer.allocUnsafe(2 + values.length * FALSE.length);
  let at = 0;
  out[at++] = 0x5b; // [
  for (const v of values) at += (v ? TRUE : FALSE).copy(out, at);
  if (values.length > 0) at--;
  out[at++] = 0x5d; // ]
  return out.toString('latin1', 0, at);
}

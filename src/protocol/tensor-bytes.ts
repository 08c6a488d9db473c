/**
 * @module protocol/tensor-bytes
 * Open Inference Protocol tensors as bytes, the form KServe's and Triton's binary tensor data
 * extension (REST) and `raw_input_contents` / `raw_output_contents` (gRPC) carry: little-endian
 * values of the datatype, row major, no padding; BOOL one byte each; BYTES each element a 4-byte
 * little-endian length, then its bytes. The front end checks a tensor's bytes against its shape
 * before they cross to the worker as a parameter of their own (`binaryParamName`); the worker's
 * kservev2 envelope views them as a typed array, so the bytes that came off the socket are the
 * values the ONNX tensor reads, with one copy at most (when the view would be misaligned).
 */
import { endianness } from 'node:os';

export type TensorValues =
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** A tensor whose bytes do not make what its datatype and shape say; the caller words it as its 400. */
export class TensorProblem extends Error {}

interface Layout {
  readonly size: number;
  /** The values of `bytes` at an `offset` aligned to `size`. */
  readonly view: (bytes: ArrayBuffer, offset: number, count: number) => TensorValues;
}

const LAYOUTS: Readonly<Record<string, Layout>> = {
  BOOL: { size: 1, view: (b, o, n) => new Uint8Array(b, o, n) },
  INT8: { size: 1, view: (b, o, n) => new Int8Array(b, o, n) },
  INT16: { size: 2, view: (b, o, n) => new Int16Array(b, o, n) },
  INT32: { size: 4, view: (b, o, n) => new Int32Array(b, o, n) },
  INT64: { size: 8, view: (b, o, n) => new BigInt64Array(b, o, n) },
  UINT8: { size: 1, view: (b, o, n) => new Uint8Array(b, o, n) },
  UINT16: { size: 2, view: (b, o, n) => new Uint16Array(b, o, n) },
  UINT32: { size: 4, view: (b, o, n) => new Uint32Array(b, o, n) },
  UINT64: { size: 8, view: (b, o, n) => new BigUint64Array(b, o, n) },
  FP16: { size: 2, view: (b, o, n) => halvesToFloats(new Uint16Array(b, o, n)) },
  FP32: { size: 4, view: (b, o, n) => new Float32Array(b, o, n) },
  FP64: { size: 8, view: (b, o, n) => new Float64Array(b, o, n) },
};

/** The Open Inference Protocol's datatypes. */
export const V2_DATATYPES: readonly string[] = [...Object.keys(LAYOUTS), 'BYTES'];

export const LITTLE_ENDIAN = endianness() === 'LE';

/** The worker parameter that carries input `index`'s bytes beside the v2 JSON header (`body`). */
export function binaryParamName(index: number): string {
  return `binary_data_${index}`;
}

/** Bytes per element of a fixed-size datatype; undefined for BYTES and unknown names. */
export function elementSize(datatype: string): number | undefined {
  return LAYOUTS[datatype]?.size;
}

/** The elements `shape` holds; a tensor that is sent has no unknown (negative) dimension. */
export function elementsOf(shape: readonly number[]): number {
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new TensorProblem(`shape [${shape.join(', ')}] has an unknown dimension`);
  return shape.reduce((n, d) => n * d, 1);
}

/**
 * Checks that `byteLength` bytes are the values `shape` holds of a fixed-size `datatype`: whole
 * values, as many as the shape holds. `what` names the bytes in the message.
 */
export function checkFixedSize(datatype: string, shape: readonly number[], byteLength: number, what: string): number {
  const size = elementSize(datatype);
  if (size === undefined) throw new TensorProblem(`unknown datatype ${datatype}`);
  const elements = elementsOf(shape);
  if (byteLength % size !== 0) throw new TensorProblem(`${byteLength} raw bytes are not whole ${datatype} values`);
  if (byteLength !== elements * size) throw new TensorProblem(`shape [${shape.join(', ')}] holds ${elements} values, ${what} has ${byteLength / size}`);
  return elements;
}

/**
 * A tensor's bytes as values of `datatype`, viewed where they lie when their offset suits the
 * element size (the bytes a message arrived in), else copied once to a place that does.
 */
export function tensorValues(datatype: string, bytes: Uint8Array): TensorValues {
  const layout = LAYOUTS[datatype];
  if (!layout) throw new TensorProblem(`unknown datatype ${datatype}`);
  if (!LITTLE_ENDIAN) throw new TensorProblem('binary tensor data needs a little-endian server');
  const aligned = bytes.byteOffset % layout.size === 0 ? bytes : Uint8Array.from(bytes);
  return layout.view(aligned.buffer as ArrayBuffer, aligned.byteOffset, Math.floor(aligned.byteLength / layout.size));
}

/**
 * BYTES in binary form (each element a 4-byte little-endian length, then its bytes) as the JSON
 * array of their base64 texts, as `bytes_contents` are written. The elements are counted and
 * checked first, then written into one buffer: an object per element (a view, then a string)
 * held until the end made a 6 MB body of empty elements cost the front end hundreds of MB.
 */
export function bytesJson(raw: Uint8Array, elements: number, shape: readonly number[], what: string): string {
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  let count = 0;
  let size = 2;
  for (let at = 0; at < bytes.length; count++) {
    if (!(count < elements)) throw new TensorProblem(`shape [${shape.join(', ')}] holds ${elements} values, ${what} has ${count + 1}`);
    const length = at + 4 <= bytes.length ? bytes.readUInt32LE(at) : -1;
    if (length < 0 || at + 4 + length > bytes.length) throw new TensorProblem('raw BYTES end inside an element');
    size += 3 + Math.ceil(length / 3) * 4;
    at += 4 + length;
  }
  if (count !== elements) throw new TensorProblem(`shape [${shape.join(', ')}] holds ${elements} values, ${what} has ${count}`);
  const out = Buffer.allocUnsafe(size);
  let written = out.write('[', 0, 'latin1');
  for (let at = 0; at < bytes.length; ) {
    const length = bytes.readUInt32LE(at);
    const text = length === 0 ? '"",' : `"${bytes.toString('base64', at + 4, at + 4 + length)}",`;
    written += out.write(text, written, 'latin1');
    at += 4 + length;
  }
  // The last comma becomes the closing bracket; an empty array has none.
  written = count > 0 ? written - 1 : written;
  written += out.write(']', written, 'latin1');
  return out.toString('latin1', 0, written);
}

/** BYTES elements in binary form: each a 4-byte little-endian length, then its bytes. */
export function bytesTensor(elements: readonly Uint8Array[]): Buffer {
  const out = Buffer.allocUnsafe(elements.reduce((n, e) => n + 4 + e.byteLength, 0));
  let at = 0;
  for (const e of elements) {
    at = out.writeUInt32LE(e.byteLength, at);
    out.set(e, at);
    at += e.byteLength;
  }
  return out;
}

/** The datatype whose binary form a typed array's bytes are. */
export function datatypeOfValues(values: TensorValues): string {
  if (values instanceof Float32Array) return 'FP32';
  if (values instanceof Float64Array) return 'FP64';
  if (values instanceof BigInt64Array) return 'INT64';
  if (values instanceof BigUint64Array) return 'UINT64';
  if (values instanceof Int32Array) return 'INT32';
  if (values instanceof Uint32Array) return 'UINT32';
  if (values instanceof Int16Array) return 'INT16';
  if (values instanceof Uint16Array) return 'UINT16';
  if (values instanceof Int8Array) return 'INT8';
  return 'UINT8';
}

/**
 * The most dimensions of a tensor sent as nested lists. Deeper lists are refused, not recursed
 * into: flattening a list nested 20,000 deep overflowed the worker's stack (a 503 for a client's
 * bad input, and the batch's other requests with it).
 */
export const MAX_TENSOR_RANK = 32;

/** A tensor sent as nested lists, its values in order; an element still a list was nested too deep. */
export function flattenTensor(values: readonly unknown[]): unknown[] {
  return values.flat(MAX_TENSOR_RANK);
}

/** A typed array's bytes, where they lie. */
export function valuesBytes(values: TensorValues): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

export function halvesToFloats(halves: Uint16Array): Float32Array {
  const floats = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) floats[i] = halfToFloat(halves[i]!);
  return floats;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? Number.NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

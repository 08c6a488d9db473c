/**
 * @module grpc/raw-tensors
 * An Open Inference Protocol tensor's `raw_input_contents` as the JSON array its v2 body carries
 * (grpc/open-inference.ts). The bytes are little-endian values of the tensor's datatype (BYTES:
 * each element a 4-byte little-endian length, then its bytes, sent on base64-encoded). They are
 * first checked against the tensor's shape, then written as JSON text straight from a typed-array
 * view: a JS value per element (6 MB of BOOL are 6 million) would cost the event loop seconds
 * and hundreds of MB for what a few bytes of shape can already show to be wrong.
 */
import { endianness } from 'node:os';
import { tsError } from '../errors.js';
import { GrpcFailure } from './calls.js';

type TypedArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

interface Layout {
  readonly size: number;
  /** The values of `bytes` (aligned to `size`), little-endian on this little-endian host. */
  readonly view: (bytes: ArrayBuffer, offset: number, count: number) => TypedArray;
}

const LAYOUTS: Record<string, Layout> = {
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

const LITTLE_ENDIAN = endianness() === 'LE';

function badInput(name: string, problem: string): GrpcFailure {
  return GrpcFailure.of(tsError('TSS_ERR_HTTP_BAD_REQUEST', `Input "${name}": ${problem}`));
}

/** The kservev2 envelope's words for values that do not fill their shape. */
function misshaped(name: string, shape: readonly number[], elements: number, values: number): GrpcFailure {
  return badInput(name, `shape [${shape.join(', ')}] holds ${elements} values, raw_input_contents has ${values}`);
}

/** The elements `shape` holds; a request's tensor has no unknown (negative) dimension. */
function elementsOf(name: string, shape: readonly number[]): number {
  if (shape.some((d) => d < 0)) throw badInput(name, `shape [${shape.join(', ')}] has an unknown dimension`);
  return shape.reduce((n, d) => n * d, 1);
}

/**
 * The fewest bytes the raw values take as JSON: a digit and a comma each, `true,` for BOOL, and
 * for BYTES at least as many as they take raw (base64 is 4/3, plus quotes and comma for the length).
 */
export function rawJsonFloor(datatype: string, raw: Buffer): number {
  if (datatype === 'BOOL') return raw.length * TRUE.length;
  const size = LAYOUTS[datatype]?.size;
  return size ? Math.floor(raw.length / size) * 2 : raw.length;
}

/** The JSON array of the tensor's raw values, checked against its shape first. */
export function rawTensorJson(name: string, datatype: string, shape: readonly number[], raw: Buffer): string {
  const elements = elementsOf(name, shape);
  if (datatype === 'BYTES') return JSON.stringify(rawStrings(raw, name, elements, shape));
  const layout = LAYOUTS[datatype];
  if (!layout) throw badInput(name, `unknown datatype ${datatype}`);
  if (raw.length % layout.size !== 0) throw badInput(name, `${raw.length} raw bytes are not whole ${datatype} values`);
  if (raw.length !== elements * layout.size) throw misshaped(name, shape, elements, raw.length / layout.size);
  if (!LITTLE_ENDIAN) throw badInput(name, 'raw_input_contents needs a little-endian server');
  // A view needs its offset aligned to the element size; the decoder's slices need not be.
  const bytes = raw.byteOffset % layout.size === 0 ? raw : Buffer.from(raw);
  const values = layout.view(bytes.buffer as ArrayBuffer, bytes.byteOffset, elements);
  if (datatype === 'BOOL') return boolsJson(values as Uint8Array);
  return `[${finite(values) ? values.join(',') : Array.from(values as Float64Array, (v) => (Number.isFinite(v) ? v : 'null')).join(',')}]`;
}

/** Whether every value has a JSON number (NaN and the infinities are null there, as JSON.stringify writes them). */
function finite(values: TypedArray): boolean {
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

/** BYTES in raw form, base64 as in `contents`; no more elements than the shape holds are read. */
function rawStrings(raw: Buffer, name: string, elements: number, shape: readonly number[]): string[] {
  const out: string[] = [];
  for (let at = 0; at < raw.length; ) {
    if (!(out.length < elements)) throw misshaped(name, shape, elements, out.length + 1);
    const length = at + 4 <= raw.length ? raw.readUInt32LE(at) : -1;
    if (length < 0 || at + 4 + length > raw.length) throw badInput(name, 'raw BYTES end inside an element');
    out.push(raw.toString('base64', at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (out.length !== elements) throw misshaped(name, shape, elements, out.length);
  return out;
}

function halvesToFloats(halves: Uint16Array): Float32Array {
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

/**
 * @module http/binary-tensors
 * Open Inference Protocol requests whose tensors come as bytes: REST's binary tensor data
 * extension (KServe's and Triton's: `Inference-Header-Content-Length: N`, the body's first N bytes
 * the JSON header, then each input with `parameters.binary_data_size` its bytes, in input order)
 * and gRPC's `raw_input_contents` (grpc/open-inference.ts). Both become the same worker request:
 * the v2 JSON header as `body`, and for a model behind the kservev2 envelope each fixed-size
 * tensor's bytes as a parameter of their own (protocol/tensor-bytes.ts `binaryParamName`), which
 * the envelope views as typed values without JSON in between. Any other handler reads v2 JSON,
 * so there the bytes are written into the header as `data` (http/raw-tensors.ts). BYTES tensors
 * always go as `data`, each element base64-encoded, as gRPC's `bytes_contents` reach a handler.
 *
 * Every way the parts can fail to fit (a header length past the body, sizes that do not add up to
 * it, bytes that do not make the shape of their datatype, an unknown datatype) is the request's 400
 * before anything is enqueued; the body itself is bounded by max_request_size as any body is.
 */
import type { FastifyRequest } from 'fastify';
import { envelopeOf, type ServerConfig } from '../config/server-config.js';
import { tsError } from '../errors.js';
import type { Model } from '../models/model.js';
import type { WireParam } from '../protocol/messages.js';
import { binaryParamName, checkFixedSize, elementsOf, V2_DATATYPES } from '../protocol/tensor-bytes.js';
import { MAX_FORM_FIELDS } from './input.js';
import { checkedTensor, rawJsonFloor, rawTensorJson } from './raw-tensors.js';

/** The request header of the binary tensor data extension: how many bytes of the body are its JSON header. */
export const HEADER_LENGTH = 'inference-header-content-length';

type Json = Record<string, unknown>;

/** A v2 request's JSON header and, by input index, the bytes of the inputs sent in binary form. */
export interface TensorRequest {
  readonly header: Json;
  readonly raws: ReadonlyMap<number, Uint8Array>;
}

/** Whether a model's handler reads tensors as bytes: the kservev2 envelope does. */
export function readsTensorBytes(model: Model, config: ServerConfig): boolean {
  return envelopeOf(config, model.spec.manifest.model.envelope) === 'kservev2';
}

/**
 * A body in the binary tensor data extension's form, its header length as the message said it:
 * a request's (its `inputs`), or a binary answer's (its `outputs`, grpc/open-inference.ts).
 */
export function splitBinaryBody(body: Buffer, headerLength: string, tensors: 'inputs' | 'outputs' = 'inputs'): TensorRequest {
  const length = /^\d{1,15}$/.test(headerLength.trim()) ? Number(headerLength) : Number.NaN;
  if (!(length <= body.length)) {
    throw bad(`Inference-Header-Content-Length ${JSON.stringify(headerLength.slice(0, 20))} is not a length within the body's ${body.length} bytes`);
  }
  const header = jsonObject(body.subarray(0, length));
  const list = header?.[tensors];
  if (!Array.isArray(list)) throw bad(`The body's first ${length} bytes (Inference-Header-Content-Length) are not a JSON object {"${tensors}": [...]}`);
  const raws = new Map<number, Uint8Array>();
  let at = length;
  list.forEach((input: unknown, i) => {
    const size = binarySize(input, i);
    if (size === undefined) return;
    // Each becomes a parameter of the worker's request, bounded as a form's fields are.
    if (raws.size >= MAX_FORM_FIELDS) throw tsError('TSS_ERR_HTTP_TOO_MANY_PARTS', MAX_FORM_FIELDS);
    if (size > body.length - at) throw bad(`${inputLabel(input, i)}: binary_data_size ${size} goes past the end of the body (${body.length - at} bytes left)`);
    raws.set(i, body.subarray(at, at + size));
    at += size;
  });
  if (at !== body.length) {
    throw bad(`The ${tensors}' binary_data_size add up to ${at - length} bytes; the body has ${body.length - length} after its ${length}-byte header`);
  }
  return { header: header as Json, raws };
}

/** Input `i`'s binary_data_size, undefined when it has none; checked to be a size with no `data` beside it. */
function binarySize(input: unknown, i: number): number | undefined {
  if (!isJson(input) || !isJson(input.parameters) || !('binary_data_size' in input.parameters)) return undefined;
  const size = input.parameters.binary_data_size;
  if (!Number.isSafeInteger(size) || (size as number) < 0) throw bad(`${inputLabel(input, i)}: binary_data_size must be a non-negative integer`);
  if (input.data !== undefined) throw bad(`${inputLabel(input, i)}: has both "data" and binary_data_size`);
  return size as number;
}

/**
 * The worker parameters of a v2 request with inputs in binary form: `binary` when the handler reads
 * tensor bytes (readsTensorBytes), else every input as v2 JSON. Written as JSON, the inputs may not
 * take more than `limit` (max_request_size): a body that large could not have come over HTTP.
 * `what` names the bytes in a 400 (gRPC's `raw_input_contents`).
 */
export function tensorParams(request: TensorRequest, binary: boolean, limit: number, what = 'its binary data'): WireParam[] {
  try {
    return writtenParams(request, binary, limit, what);
  } catch (err) {
    // JSON.parse reads any depth, JSON.stringify recurses: a header nested thousands deep (legal
    // JSON, sent whole to the handler when there are no binary tensors) overflows the stack here.
    if (err instanceof RangeError) throw bad(`The inference header cannot be written again as JSON: ${err.message}`);
    throw err;
  }
}

function writtenParams({ header, raws }: TensorRequest, binary: boolean, limit: number, what: string): WireParam[] {
  const params: WireParam[] = [];
  let jsonFloor = 0;
  const inputs = (header.inputs as unknown[]).map((input, i) => {
    const raw = raws.get(i);
    if (raw === undefined) return JSON.stringify(input);
    const { name, datatype, shape } = tensorHead(input as Json, i);
    const rest = withoutBinarySize(input as Json);
    if (binary && datatype !== 'BYTES') {
      checkedTensor(name, () => checkFixedSize(datatype, shape, raw.length, what));
      params.push({ name: binaryParamName(i), contentType: undefined, value: raw });
      jsonFloor += raw.length;
      return JSON.stringify({ ...rest, parameters: { ...(rest.parameters as Json | undefined), binary_data_size: raw.length } });
    }
    jsonFloor += rawJsonFloor(datatype, raw);
    if (jsonFloor > limit) throw tsError('TSS_ERR_HTTP_BODY_TOO_LARGE', limit);
    return `${JSON.stringify(rest).slice(0, -1)},"data":${rawTensorJson(name, datatype, shape, raw, what)}}`;
  });
  if (jsonFloor > limit) throw tsError('TSS_ERR_HTTP_BODY_TOO_LARGE', limit);
  const head = JSON.stringify({ ...header, inputs: undefined });
  const body = `${head === '{}' ? '{' : `${head.slice(0, -1)},`}"inputs":[${inputs.join(',')}]}`;
  return [{ name: 'body', contentType: 'application/json', value: Buffer.from(body, 'utf8') }, ...params];
}

/** The name, datatype and shape of an input sent as bytes, each checked. */
function tensorHead(input: Json, i: number): { name: string; datatype: string; shape: number[] } {
  const { name, datatype, shape } = input;
  if (typeof name !== 'string') throw bad(`Input ${i} has no "name"`);
  if (typeof datatype !== 'string' || !V2_DATATYPES.includes(datatype)) {
    throw bad(`Input "${name}": "datatype" must be one of ${V2_DATATYPES.join(', ')}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d))) throw bad(`Input "${name}": "shape" must be a list of non-negative integers`);
  checkedTensor(name, () => elementsOf(shape as number[]));
  return { name, datatype, shape: shape as number[] };
}

/** The input without its binary_data_size (and without `parameters` when that was all it held). */
function withoutBinarySize(input: Json): Json {
  const { binary_data_size: _size, ...parameters } = (input.parameters ?? {}) as Json;
  const { parameters: _parameters, ...rest } = input;
  return Object.keys(parameters).length > 0 ? { ...rest, parameters } : rest;
}

/** The binary form's params of a REST request, or undefined when it is plain JSON (no header length). */
export function binaryRequestParams(request: FastifyRequest, model: Model, config: ServerConfig): WireParam[] | undefined {
  const headerLength = request.headers[HEADER_LENGTH];
  if (headerLength === undefined) return undefined;
  const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
  return tensorParams(splitBinaryBody(body, [headerLength].flat().join(',')), readsTensorBytes(model, config), config.maxRequestSize);
}

function inputLabel(input: unknown, i: number): string {
  return isJson(input) && typeof input.name === 'string' ? `Input "${input.name}"` : `Input ${i}`;
}

function jsonObject(bytes: Buffer): Json | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return isJson(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function isJson(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function bad(message: string): Error {
  return tsError('TSS_ERR_HTTP_BAD_REQUEST', message);
}

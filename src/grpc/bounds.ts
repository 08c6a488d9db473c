/**
 * @module grpc/bounds
 * The gRPC side of the HTTP parts limit (http/input.ts MAX_FORM_FIELDS): a message whose map or
 * repeated message/bytes field has more entries than an HTTP body may have parts is refused before
 * it is decoded. Decoding is where such a message costs: each entry becomes a JS object or Buffer
 * (550,000 empty `input` entries fit in 6 MB and took seconds of the event loop and hundreds of MB),
 * and grpc-js decodes before any method runs. So each method's deserializer first walks the wire
 * bytes, counting the length-delimited entries of each field (maps, messages, strings, bytes;
 * packed numbers are one entry and cost what JSON numbers cost over HTTP), and answers a
 * `RefusedMessage` instead of decoding; the method's wrapper (grpc/calls.ts) turns it into
 * RESOURCE_EXHAUSTED with the HTTP refusal's message.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { tsError, type TsError } from '../errors.js';
import { MAX_FORM_FIELDS } from '../http/input.js';

/** Field numbers whose entries are themselves messages to count in, by message: `{5: {5: {}}}` = field 5, and field 5 inside it. */
export interface Nesting {
  readonly [field: number]: Nesting;
}

/** What a method's deserializer answers for a message with too many entries. */
export class RefusedMessage {
  readonly error: TsError = tsError('TSS_ERR_HTTP_TOO_MANY_PARTS', MAX_FORM_FIELDS);
}

/** The refusal `request` stands for, if it is one. */
export function refusalOf(request: unknown): TsError | undefined {
  return request instanceof RefusedMessage ? request.error : undefined;
}

/** `definition` with each method's requests counted before they are decoded; `nesting` names the methods' nested fields to count in too. */
export function boundedDefinition(definition: ServiceDefinition, nesting: Readonly<Record<string, Nesting>> = {}): ServiceDefinition {
  return Object.fromEntries(
    Object.entries(definition).map(([method, d]) => {
      const inner = nesting[method] ?? {};
      const requestDeserialize = (bytes: Buffer): unknown => (withinEntries(bytes, inner) ? d.requestDeserialize(bytes) : new RefusedMessage());
      return [method, { ...d, requestDeserialize }];
    }),
  ) as ServiceDefinition;
}

/**
 * Whether no field of the message in `bytes` (nor of the nested messages `nesting` names) has more
 * than MAX_FORM_FIELDS length-delimited entries. Bytes that are no valid message pass: decoding
 * them fails as it would have.
 */
export function withinEntries(bytes: Uint8Array, nesting: Nesting, start = 0, end = bytes.length): boolean {
  const counts = new Map<number, number>();
  let at = start;
  while (at < end) {
    const tag = varint(bytes, at, end);
    if (!tag) return true;
    at = tag.next;
    const field = Math.floor(tag.value / 8);
    const wireType = tag.value % 8;
    if (wireType !== 2) {
      const next = skipScalar(bytes, at, end, wireType);
      if (next === undefined) return true;
      at = next;
      continue;
    }
    const length = varint(bytes, at, end);
    if (!length || length.next + length.value > end) return true;
    const count = (counts.get(field) ?? 0) + 1;
    if (count > MAX_FORM_FIELDS) return false;
    counts.set(field, count);
    const inner = nesting[field];
    if (inner && !withinEntries(bytes, inner, length.next, length.next + length.value)) return false;
    at = length.next + length.value;
  }
  return true;
}

/** Past a varint (0), 64-bit (1) or 32-bit (5) value; undefined for what no proto3 message holds. */
function skipScalar(bytes: Uint8Array, at: number, end: number, wireType: number): number | undefined {
  if (wireType === 0) return varint(bytes, at, end)?.next;
  const size = wireType === 1 ? 8 : wireType === 5 ? 4 : -1;
  return size > 0 && at + size <= end ? at + size : undefined;
}

/** The varint at `at` (lengths and tags fit 2^53) and where it ends; undefined if it runs past `end`. */
function varint(bytes: Uint8Array, at: number, end: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = at; i < end && i < at + 10; i++) {
    const byte = bytes[i]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return { value, next: i + 1 };
    scale *= 128;
  }
  return undefined;
}

/**
 * @module metrics/otlp-spans
 * tsserve's spans written straight into the body of an OTLP/HTTP export (ExportTraceServiceRequest,
 * protobuf), byte for byte as the OTLP exporter's ProtobufTraceSerializer writes the same spans
 * (otlp-spans.test.ts checks it), from the handful of numbers and ids a prediction and a batch
 * keep (metrics/tracing.ts). What the serializer would need per span, an SDK span object, an
 * HrTime pair for each time, an attributes object, a links array, a Uint8Array for each id, is
 * never made: ids are written from the bytes they are kept as (TraceBytes), times from their milliseconds, and the resource and
 * the instrumentation scope, the same for every span, are written once. Spans accumulate in one
 * buffer that lives as long as the server (no garbage per span), and leave it as whole export
 * bodies, up to a number of spans and of bytes each. Every text a span carries (its name, its
 * string attributes, its status message: model names, versions, request ids a client chose) is
 * cut to a length, as the SDK cuts attribute values at OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, so that
 * a client's 3 MB model name costs the buffer and the collector 256 characters, not 3 MB.
 */
import type { AttributeValue, SpanKind } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';

/** Protobuf's wire types. */
const VARINT = 0;
const FIXED64 = 1;
const LENGTH = 2;
const FIXED32 = 5;

/** Span.flags: the W3C trace flags, and whether the parent's context is known to be remote. */
const FLAGS_HAS_IS_REMOTE = 0x100;
const FLAGS_IS_REMOTE = 0x200;

/** The status codes of a span's Status. */
const STATUS_UNSET = 0;
const STATUS_ERROR = 2;

/**
 * A protobuf writer into a buffer that grows: a length-delimited message reserves one byte for
 * its length and moves its body when the length needs more (the serializer's way, so its
 * varints are the same).
 */
class ProtoWriter {
  buffer: Uint8Array;
  pos = 0;
  private readonly encoder = new TextEncoder();

  constructor(size: number) {
    this.buffer = new Uint8Array(size);
  }

  private room(bytes: number): void {
    if (this.pos + bytes <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.pos + bytes) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buffer.subarray(0, this.pos));
    this.buffer = grown;
  }

  /** Gives back the room a burst of large spans grew it to, once they are gone. */
  shrink(to: number): void {
    if (this.buffer.length <= to * 4 || this.pos > this.buffer.length / 4) return;
    let size = to;
    while (size < this.pos * 2) size *= 2;
    const smaller = new Uint8Array(size);
    smaller.set(this.buffer.subarray(0, this.pos));
    this.buffer = smaller;
  }

  tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  /** An integer; a negative one as its 64-bit two's complement, as the serializer writes it. */
  varint(value: number): void {
    // Tags, lengths of ids and names, counts: most varints here are one byte.
    if (value >= 0 && value < 128) {
      this.room(1);
      this.buffer[this.pos++] = value;
      return;
    }
    this.room(10);
    const magnitude = Math.abs(value);
    let low = magnitude >>> 0;
    let high = (magnitude / 4294967296) >>> 0;
    if (value < 0) {
      low = (~low + 1) >>> 0;
      high = (~high + (low === 0 ? 1 : 0)) >>> 0;
    }
    while (high > 0 || low > 127) {
      this.buffer[this.pos++] = (low & 127) | 128;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    this.buffer[this.pos++] = low;
  }

  fixed32(value: number): void {
    this.room(4);
    const b = this.buffer;
    b[this.pos++] = value & 255;
    b[this.pos++] = (value >>> 8) & 255;
    b[this.pos++] = (value >>> 16) & 255;
    b[this.pos++] = (value >>> 24) & 255;
  }

  double(value: number): void {
    this.room(8);
    new DataView(this.buffer.buffer, this.buffer.byteOffset).setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  /**
   * Milliseconds since the epoch as fixed64 nanoseconds, through the seconds and nanoseconds the
   * SDK's millisToHrTime makes of them, and the serializer's arithmetic (exact past 2^53).
   */
  time(ms: number): void {
    const seconds = Math.trunc(ms / 1000);
    const nanos = Math.round((ms % 1000) * 1e6);
    const lowerNanos = (seconds & 65535) * 1e9;
    const upperNanos = ((seconds / 65536) >>> 0) * 1e9;
    const low = (lowerNanos >>> 0) + ((((upperNanos & 65535) * 65536) >>> 0) + nanos);
    const high = (Math.floor(lowerNanos / 4294967296) + ((upperNanos / 65536) >>> 0) + Math.floor(low / 4294967296)) >>> 0;
    this.fixed32(low >>> 0);
    this.fixed32(high);
  }

  /** A text: an ASCII one of under 128 characters (names, ids, versions) a character a byte, in one pass; else encoded. */
  string(text: string): void {
    const length = text.length;
    if (length < 128) {
      this.room(length + 1);
      const b = this.buffer;
      let p = this.pos + 1;
      for (let i = 0; i < length; i++) {
        const code = text.charCodeAt(i);
        if (code >= 128) {
          this.bytes(this.encoder.encode(text));
          return;
        }
        b[p++] = code;
      }
      b[this.pos] = length;
      this.pos = p;
      return;
    }
    this.bytes(this.encoder.encode(text));
  }

  bytes(bytes: Uint8Array): void {
    this.varint(bytes.length);
    this.raw(bytes);
  }

  /** Bytes already written as protobuf (a field, spans), as they are. */
  raw(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.buffer.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** `length` bytes of `ids` from `at`, length-delimited: an id, as it is. */
  id(ids: Uint8Array, at: number, length: number): void {
    this.room(length + 1);
    const b = this.buffer;
    b[this.pos++] = length;
    for (let i = at; i < at + length; i++) b[this.pos++] = ids[i]!;
  }

  /** Opens a length-delimited message: what `close` takes. */
  open(): number {
    this.room(1);
    return this.pos++;
  }

  close(at: number): void {
    const length = this.pos - at - 1;
    const size = varintSize(length);
    if (size > 1) {
      this.room(size - 1);
      this.buffer.copyWithin(at + size, at + 1, this.pos);
      this.pos += size - 1;
    }
    let v = length;
    let p = at;
    while (v > 127) {
      this.buffer[p++] = (v & 127) | 128;
      v >>>= 7;
    }
    this.buffer[p] = v;
  }

  /** A KeyValue in field `field`: an attribute of a span or of the resource; its key as text or as its field written beforehand. */
  keyValue(field: number, key: string | Uint8Array, value: AttributeValue | Record<string, unknown> | undefined): void {
    this.tag(field, LENGTH);
    const kv = this.open();
    if (typeof key === 'string') {
      this.tag(1, LENGTH);
      this.string(key);
    } else {
      this.raw(key);
    }
    this.tag(2, LENGTH);
    const any = this.open();
    this.anyValue(value);
    this.close(any);
    this.close(kv);
  }

  /** An AnyValue's field, as the serializer's writeAnyValue chooses it. */
  private anyValue(value: unknown): void {
    if (typeof value === 'string') {
      this.tag(1, LENGTH);
      this.string(value);
    } else if (typeof value === 'boolean') {
      this.tag(2, VARINT);
      this.varint(value ? 1 : 0);
    } else if (typeof value === 'number') {
      if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
        this.tag(3, VARINT);
        this.varint(value);
      } else {
        this.tag(4, FIXED64);
        this.double(value);
      }
    } else if (value instanceof Uint8Array) {
      this.tag(7, LENGTH);
      this.bytes(value);
    } else if (Array.isArray(value)) {
      this.tag(5, LENGTH);
      const array = this.open();
      for (const item of value) {
        this.tag(1, LENGTH);
        const at = this.open();
        this.anyValue(item);
        this.close(at);
      }
      this.close(array);
    } else if (typeof value === 'object' && value !== null) {
      this.tag(6, LENGTH);
      const list = this.open();
      for (const [k, v] of Object.entries(value)) this.keyValue(1, k, v as AttributeValue);
      this.close(list);
    }
  }
}

function varintSize(value: number): number {
  let size = 1;
  for (let v = value; v > 127; v = Math.floor(v / 128)) size++;
  return size;
}

/** Span.flags of a span (or a link) of `traceFlags`, its parent's (or its) remoteness `remote`. */
function flagsOf(traceFlags: number, remote: boolean): number {
  return (traceFlags & 255) | FLAGS_HAS_IS_REMOTE | (remote ? FLAGS_IS_REMOTE : 0);
}

/**
 * A span's trace as bytes: its trace id, the 16 bytes at `at` of `ids`, its span id and its
 * children's (and, for a server span, its parent's) 8 bytes at other places of `ids` that the
 * writer is told. Ids are kept so from the moment they are made (a random block) or read (a
 * client's traceparent, its hex read once), and written into spans as they are: no hex per span.
 */
export interface TraceBytes {
  readonly ids: Uint8Array;
  readonly at: number;
  /** W3C trace flags. */
  readonly traceFlags: number;
  /** W3C tracestate as its header writes it; undefined for none. */
  readonly traceState: string | undefined;
}

/** The length the texts of a span are cut to unless OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT says otherwise. */
export const TEXT_LENGTH_LIMIT = 256;

/** Attribute keys whose fields are kept written: more than tsserve's spans have. */
const MAX_KEYS = 32;

/** The size the span buffer starts at, and shrinks back to. */
const BUFFER_SIZE = 64 * 1024;

/** A span written and not yet in an export: where the buffer was, for `undo`. */
export interface SpanMark {
  readonly pos: number;
  readonly count: number;
}

/**
 * Spans written one field at a time into an export's ScopeSpans (`begin`, its attributes, its
 * links, `end`), in the serializer's field order, and taken out as export bodies (`take`).
 */
export class OtlpSpans {
  private readonly writer = new ProtoWriter(BUFFER_SIZE);
  private readonly textLimit: number;
  /** Where each span written and not taken ends. */
  private ends: number[] = [];
  private span = -1;
  private linked = false;
  /** The span being written's Span.flags. */
  private flags = 0;
  /** The ResourceSpans' resource field and the ScopeSpans' scope field, written once. */
  private readonly resourceField: Uint8Array;
  private readonly scopeField: Uint8Array;
  private readonly resourceSchema: Uint8Array;
  /** Attribute keys' fields (keyField). */
  private readonly keys = new Map<string, Uint8Array>();

  constructor(resource: Resource, scope: InstrumentationScope, textLimit = TEXT_LENGTH_LIMIT) {
    this.textLimit = textLimit;
    this.resourceField = written((w) => {
      w.tag(1, LENGTH);
      const at = w.open();
      for (const [key, value] of Object.entries(resource.attributes)) w.keyValue(1, key, value);
      w.tag(2, VARINT);
      w.varint(0);
      w.close(at);
    });
    this.scopeField = written((w) => {
      w.tag(1, LENGTH);
      const at = w.open();
      w.tag(1, LENGTH);
      w.string(scope.name);
      if (scope.version) {
        w.tag(2, LENGTH);
        w.string(scope.version);
      }
      w.close(at);
    });
    this.resourceSchema = written((w) => {
      if (!resource.schemaUrl) return;
      w.tag(3, LENGTH);
      w.string(resource.schemaUrl);
    });
  }

  /** Spans written and not yet taken. */
  get count(): number {
    return this.ends.length;
  }

  /** Bytes of the spans written and not yet taken. */
  get bytes(): number {
    return this.writer.pos;
  }

  /** A span's text as it is written: cut to the limit. */
  private cut(text: string): string {
    return text.length > this.textLimit ? text.slice(0, this.textLimit) : text;
  }

  /** Where the buffer is: spans written after it can be undone (a queue that is full). */
  mark(): SpanMark {
    return { pos: this.writer.pos, count: this.ends.length };
  }

  undo(mark: SpanMark): void {
    this.writer.pos = mark.pos;
    this.ends.length = mark.count;
  }

  /**
   * A span's name field written beforehand, for `begin` to copy: the names a model's spans
   * share ("prediction mnist"), written once rather than a character at a time per span.
   */
  nameField(name: string): Uint8Array {
    return written((w) => {
      w.tag(5, LENGTH);
      w.string(this.cut(name));
    });
  }

  /** An attribute written beforehand, for `fields` to copy: one a model's spans share (its name, its version). */
  attributeField(key: string, value: string | number): Uint8Array {
    return written((w) => w.keyValue(9, key, typeof value === 'string' ? this.cut(value) : value));
  }

  /** Fields written beforehand (attributeField), in their place among a span's attributes. */
  fields(bytes: Uint8Array): void {
    this.writer.raw(bytes);
  }

  /**
   * A span's first fields, to its end time (`endMs` at least `startMs`, as the SDK ends a span);
   * its name as text or as its field written beforehand (nameField). Its span id is the 8 bytes
   * at `spanAt` of `trace.ids`, its parent's at `parentAt` (-1: a root span), remote or not.
   */
  begin(
    name: string | Uint8Array,
    trace: TraceBytes,
    spanAt: number,
    parentAt: number,
    parentRemote: boolean,
    kind: SpanKind,
    startMs: number,
    endMs: number,
  ): void {
    const w = this.writer;
    w.tag(2, LENGTH);
    this.span = w.open();
    this.linked = false;
    this.flags = flagsOf(trace.traceFlags, parentRemote);
    this.contextFields(trace, spanAt);
    if (parentAt >= 0) {
      w.tag(4, LENGTH);
      w.id(trace.ids, parentAt, 8);
    }
    if (typeof name === 'string') {
      w.tag(5, LENGTH);
      w.string(this.cut(name));
    } else {
      w.raw(name);
    }
    w.tag(6, VARINT);
    w.varint(kind + 1);
    w.tag(7, FIXED64);
    w.time(startMs);
    w.tag(8, FIXED64);
    w.time(Math.max(startMs, endMs));
  }

  /** A span's or a link's fields 1-3: its trace id, span id (at `spanAt`) and tracestate. */
  private contextFields(trace: TraceBytes, spanAt: number): void {
    const w = this.writer;
    w.tag(1, LENGTH);
    w.id(trace.ids, trace.at, 16);
    w.tag(2, LENGTH);
    w.id(trace.ids, spanAt, 8);
    if (trace.traceState) {
      w.tag(3, LENGTH);
      w.string(trace.traceState);
    }
  }

  /** One of its attributes, before its links. */
  attribute(key: string, value: string | number): void {
    this.writer.keyValue(9, this.keyField(key), typeof value === 'string' ? this.cut(value) : value);
  }

  /** A KeyValue's key field, written once per key: tsserve's few attribute names. */
  private keyField(key: string): Uint8Array | string {
    let field = this.keys.get(key);
    if (field === undefined) {
      if (this.keys.size >= MAX_KEYS) return key;
      field = written((w) => {
        w.tag(1, LENGTH);
        w.string(key);
      });
      this.keys.set(key, field);
    }
    return field;
  }

  /** A link to the span of `trace` whose id is at `spanAt`, after its attributes; `remote`: a context from elsewhere. */
  link(trace: TraceBytes, spanAt: number, remote = false): void {
    const w = this.writer;
    this.countsBeforeLinks();
    w.tag(13, LENGTH);
    const at = w.open();
    this.contextFields(trace, spanAt);
    w.tag(5, VARINT);
    w.varint(0);
    w.tag(6, FIXED32);
    w.fixed32(flagsOf(trace.traceFlags, remote));
    w.close(at);
  }

  /** Its status (ERROR with `error`, UNSET without) and flags: the span is written. */
  end(error: string | undefined): void {
    const w = this.writer;
    this.countsBeforeLinks();
    w.tag(14, VARINT);
    w.varint(0);
    w.tag(15, LENGTH);
    const status = w.open();
    if (error) {
      w.tag(2, LENGTH);
      w.string(this.cut(error));
    }
    w.tag(3, VARINT);
    w.varint(error === undefined ? STATUS_UNSET : STATUS_ERROR);
    w.close(status);
    w.tag(16, FIXED32);
    w.fixed32(this.flags);
    w.close(this.span);
    this.ends.push(w.pos);
  }

  /** The dropped attributes' and events' counts (0), which come before the links. */
  private countsBeforeLinks(): void {
    if (this.linked) return;
    this.linked = true;
    this.writer.tag(10, VARINT);
    this.writer.varint(0);
    this.writer.tag(12, VARINT);
    this.writer.varint(0);
  }

  /**
   * An export body of the first `max` spans written (all of them at most), no more of them than
   * fit in `maxBytes` (one at least), which leave the buffer; undefined when there are none.
   */
  take(max: number, maxBytes = Number.POSITIVE_INFINITY): { readonly body: Uint8Array; readonly count: number } | undefined {
    let count = Math.min(max, this.ends.length);
    while (count > 1 && this.ends[count - 1]! > maxBytes) count--;
    if (count === 0) return undefined;
    const w = this.writer;
    const spansEnd = this.ends[count - 1]!;
    const scopeSpans = this.scopeField.length + spansEnd;
    const resourceSpans = this.resourceField.length + 1 + varintSize(scopeSpans) + scopeSpans + this.resourceSchema.length;
    const out = new ProtoWriter(1 + varintSize(resourceSpans) + resourceSpans);
    out.tag(1, LENGTH);
    out.varint(resourceSpans);
    out.raw(this.resourceField);
    out.tag(2, LENGTH);
    out.varint(scopeSpans);
    out.raw(this.scopeField);
    out.raw(w.buffer.subarray(0, spansEnd));
    out.raw(this.resourceSchema);
    w.buffer.copyWithin(0, spansEnd, w.pos);
    w.pos -= spansEnd;
    w.shrink(BUFFER_SIZE);
    this.ends = this.ends.slice(count).map((end) => end - spansEnd);
    return { body: out.buffer, count };
  }
}

/** What `write` writes, as bytes of their own. */
function written(write: (w: ProtoWriter) => void): Uint8Array {
  const w = new ProtoWriter(256);
  write(w);
  return w.buffer.slice(0, w.pos);
}

/**
 * The spans of an OTLP/HTTP trace export's body (ExportTraceServiceRequest, protobuf), with the
 * fields the tests read, decoded with the schema of opentelemetry-proto's trace.proto written out
 * below (field numbers as there). Its own module: a test that decodes what an exporter wrote in
 * its process (src/metrics/tracing.test.ts) needs neither the receiver nor the built server that
 * otlp-receiver.ts's helpers load.
 */
import protobuf from 'protobufjs';

const OTLP_TRACE_PROTO = `
syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
message InstrumentationScope { string name = 1; string version = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4; string name = 5;
  int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; repeated Link links = 13; Status status = 15;
}
message Link { bytes trace_id = 1; bytes span_id = 2; }
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; } }
`;

const Request = protobuf.parse(OTLP_TRACE_PROTO, { keepCase: true }).root.lookupType('ExportTraceServiceRequest');

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  /** W3C tracestate; '' for none. */
  readonly traceState: string;
  readonly name: string;
  readonly kind: number;
  /** Nanoseconds since the epoch, as a bigint's decimal text would lose nothing: milliseconds here. */
  readonly startMs: number;
  readonly endMs: number;
  readonly attributes: Record<string, string | number | boolean>;
  readonly links: Array<{ traceId: string; spanId: string }>;
  readonly statusCode: number;
  readonly resource: Record<string, string | number | boolean>;
}

interface DecodedValue {
  string_value?: string;
  bool_value?: boolean;
  int_value?: number;
  double_value?: number;
}
interface DecodedKeyValue {
  key: string;
  value?: DecodedValue;
}
interface DecodedSpan {
  trace_id: Buffer;
  span_id: Buffer;
  parent_span_id: Buffer;
  trace_state: string;
  name: string;
  kind: number;
  start_time_unix_nano: number;
  end_time_unix_nano: number;
  attributes: DecodedKeyValue[];
  links: Array<{ trace_id: Buffer; span_id: Buffer }>;
  status?: { code: number };
}
interface DecodedRequest {
  resource_spans: Array<{ resource?: { attributes: DecodedKeyValue[] }; scope_spans: Array<{ spans: DecodedSpan[] }> }>;
}

function attributesOf(kvs: DecodedKeyValue[] = []): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of kvs) out[kv.key] = kv.value?.string_value ?? kv.value?.int_value ?? kv.value?.double_value ?? kv.value?.bool_value ?? '';
  return out;
}

/** The spans of one OTLP/HTTP protobuf body. */
export function decodeTraces(body: Buffer): ReceivedSpan[] {
  const request = Request.toObject(Request.decode(body), { longs: Number, defaults: true, oneofs: false }) as DecodedRequest;
  return request.resource_spans.flatMap((rs) => {
    const resource = attributesOf(rs.resource?.attributes);
    return rs.scope_spans.flatMap((ss) =>
      ss.spans.map((s) => ({
        traceId: Buffer.from(s.trace_id).toString('hex'),
        spanId: Buffer.from(s.span_id).toString('hex'),
        parentSpanId: Buffer.from(s.parent_span_id).toString('hex'),
        traceState: s.trace_state,
        name: s.name,
        kind: s.kind,
        startMs: s.start_time_unix_nano / 1e6,
        endMs: s.end_time_unix_nano / 1e6,
        attributes: attributesOf(s.attributes),
        links: s.links.map((l) => ({ traceId: Buffer.from(l.trace_id).toString('hex'), spanId: Buffer.from(l.span_id).toString('hex') })),
        statusCode: s.status?.code ?? 0,
        resource,
      })),
    );
  });
}

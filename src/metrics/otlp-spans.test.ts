// OtlpSpans writes, for the same spans, the bytes the OTLP exporter's ProtobufTraceSerializer
// writes for the SDK's ReadableSpans: every field tsserve's spans use (ids, tracestate, a remote
// parent, kinds, times to the nanosecond, string and integer attributes, links, error statuses,
// non-ASCII text, messages long enough for two- and three-byte lengths), the resource as the
// SDK's detectors make it, and exports taken part by part.
import t, { type Test } from 'tap';
import { SpanKind, SpanStatusCode, TraceFlags, createTraceState, type Attributes, type SpanContext } from '@opentelemetry/api';
import { millisToHrTime } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { defaultResource, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { OtlpSpans, type TraceBytes } from './otlp-spans.js';

interface SpanSpec {
  readonly name: string;
  readonly context: SpanContext;
  readonly parent?: SpanContext;
  readonly kind: SpanKind;
  readonly startMs: number;
  readonly endMs: number;
  readonly attributes?: ReadonlyArray<readonly [string, string | number]>;
  readonly links?: readonly SpanContext[];
  readonly error?: string;
}

const SCOPE = { name: 'tsserve', version: '1.2.3' };
/** No length limit on texts: the SDK's default, which the serializer's bytes are compared at. */
const UNCUT = Number.POSITIVE_INFINITY;

/** The SDK's ReadableSpan of `spec`, as metrics/tracing.ts made them before OtlpSpans. */
function readable(spec: SpanSpec, resource: Resource): ReadableSpan {
  const startTime = millisToHrTime(spec.startMs);
  const endTime = millisToHrTime(Math.max(spec.startMs, spec.endMs));
  const attributes: Attributes = {};
  for (const [k, v] of spec.attributes ?? []) attributes[k] = v;
  return {
    name: spec.name,
    kind: spec.kind,
    spanContext: () => spec.context,
    parentSpanContext: spec.parent,
    startTime,
    endTime,
    status: spec.error === undefined ? { code: SpanStatusCode.UNSET } : { code: SpanStatusCode.ERROR, message: spec.error },
    attributes,
    links: (spec.links ?? []).map((context) => ({ context })),
    events: [],
    duration: [0, 0],
    ended: true,
    resource,
    instrumentationScope: SCOPE,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

/**
 * A context as the writer takes it (TraceBytes): its trace id's bytes, then its span id's, then
 * its parent's span id's when it has one.
 */
function bytesOf(context: SpanContext, parent?: SpanContext): TraceBytes {
  const ids = Buffer.from(`${context.traceId}${context.spanId}${parent?.spanId ?? ''}`, 'hex');
  return { ids, at: 0, traceFlags: context.traceFlags, traceState: context.traceState?.serialize() || undefined };
}

/** `spec` written into `spans`; `prewritten`: its name and attributes as fields written beforehand (nameField, attributeField). */
function write(spans: OtlpSpans, spec: SpanSpec, prewritten = false): void {
  const name = prewritten ? spans.nameField(spec.name) : spec.name;
  const parentAt = spec.parent ? 24 : -1;
  spans.begin(name, bytesOf(spec.context, spec.parent), 16, parentAt, spec.parent?.isRemote === true, spec.kind, spec.startMs, spec.endMs);
  for (const [k, v] of spec.attributes ?? []) {
    if (prewritten) spans.fields(spans.attributeField(k, v));
    else spans.attribute(k, v);
  }
  for (const link of spec.links ?? []) spans.link(bytesOf(link), 16, link.isRemote === true);
  spans.end(spec.error);
}

const hex = (n: number, bytes: number): string => n.toString(16).padStart(bytes * 2, '0');
const context = (i: number, extra: Partial<SpanContext> = {}): SpanContext => ({
  traceId: hex(0x1234 + i, 16),
  spanId: hex(0xabcdef00 + i, 8),
  traceFlags: TraceFlags.SAMPLED,
  ...extra,
});

/** A prediction's spans and a batch's, with every variation tsserve's spans have. */
function specs(): SpanSpec[] {
  const remote = context(1, { isRemote: true, traceState: createTraceState('vendor=abc,other=1') });
  const own = context(2, { traceId: remote.traceId, traceState: remote.traceState });
  const batch = context(3, { traceId: remote.traceId });
  const now = performance.timeOrigin + 123.456789;
  const long = 'x'.repeat(300);
  return [
    {
      name: 'queue mnist',
      context: context(4, { traceId: own.traceId, traceState: own.traceState }),
      parent: own,
      kind: SpanKind.INTERNAL,
      startMs: now,
      endMs: now + 0.25,
    },
    {
      name: 'prediction mnist',
      context: own,
      parent: remote,
      kind: SpanKind.SERVER,
      startMs: now - 0.5,
      endMs: now + 3.75,
      attributes: [
        ['tsserve.model.name', 'mnist'],
        ['tsserve.model.version', '1.0'],
        ['tsserve.request.id', '6f0c8a52-2c3e-4c7e-9d43-0d3a1f0b9e11'],
        ['http.response.status_code', 200],
      ],
      links: [batch],
    },
    { name: 'preprocess', context: context(5, { traceId: batch.traceId }), parent: batch, kind: SpanKind.INTERNAL, startMs: now + 0.3, endMs: now + 0.4 },
    {
      name: 'inference',
      context: context(6, { traceId: batch.traceId }),
      parent: batch,
      kind: SpanKind.INTERNAL,
      startMs: now + 0.4,
      endMs: now + 0.3,
      error: 'out of memory',
    },
    {
      name: 'batch mnist',
      context: batch,
      parent: own,
      kind: SpanKind.INTERNAL,
      startMs: now + 0.25,
      endMs: now + 3.5,
      attributes: [
        ['tsserve.model.name', 'mnist'],
        ['tsserve.batch.size', 8],
        ['tsserve.worker.id', '9000'],
      ],
      links: [own, context(7), context(8, { traceState: createTraceState('a=b') }), remote],
      error: '',
    },
    {
      name: `prediction modèle-名前 ${long}`,
      context: context(9, { traceFlags: TraceFlags.SAMPLED }),
      kind: SpanKind.SERVER,
      startMs: 1_765_000_001_000 - 2 ** -12,
      endMs: 1_765_000_001_000 + 2 ** -12,
      attributes: [
        ['tsserve.model.name', `modèle-名前 ${long}`],
        ['http.response.status_code', 503],
      ],
      error: `worker died: ${long}`,
    },
  ];
}

function same(t: Test, resource: Resource, list: SpanSpec[], message: string, prewritten = false): void {
  const spans = new OtlpSpans(resource, SCOPE, UNCUT);
  for (const spec of list) write(spans, spec, prewritten);
  const ours = spans.take(list.length);
  const theirs = ProtobufTraceSerializer.serializeRequest(list.map((s) => readable(s, resource)));
  t.ok(ours && theirs, `${message}: both wrote a body`);
  t.equal(ours?.count, list.length, `${message}: every span`);
  t.same(Buffer.from(ours!.body), Buffer.from(theirs!), message);
}

t.test("the serializer's bytes for tsserve's spans", async (t) => {
  const resource = defaultResource().merge(resourceFromAttributes({ 'service.name': 'tsserve', 'service.version': '1.2.3' }));
  same(t, resource, specs(), 'one of each');
  same(t, resource, specs().slice(1, 2), 'one span');
  const many = Array.from({ length: 120 }, (_, i) => specs()[i % 6]!);
  same(t, resource, many, '120 spans: a body of three-byte lengths');
  same(t, resource, specs(), 'names and attributes written beforehand, as a model writes its own once', true);
});

t.test('a resource of every attribute type the detectors can give, and a schema URL', async (t) => {
  const resource = resourceFromAttributes(
    {
      'service.name': 'tsserve',
      'process.pid': 4242,
      'host.cpu.ratio': 0.5,
      offset: -7,
      'deployment.canary': true,
      'process.command_args': ['node', 'tsserve', 'é'],
    },
    { schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' },
  );
  same(t, resource, specs(), 'strings, integers, a negative one, a double, a boolean, an array; the schema URL');
});

t.test('exports taken part by part: each body as the serializer writes its spans, and nothing lost or repeated', async (t) => {
  const resource = defaultResource();
  const list = specs();
  const spans = new OtlpSpans(resource, SCOPE, UNCUT);
  for (const spec of list) write(spans, spec);
  const first = spans.take(4);
  t.equal(spans.count, 2, 'two left');
  write(spans, list[0]!);
  const second = spans.take(100);
  t.equal(spans.count, 0);
  t.equal(spans.take(10), undefined, 'nothing to take: no body');
  t.same(Buffer.from(first!.body), Buffer.from(ProtobufTraceSerializer.serializeRequest(list.slice(0, 4).map((s) => readable(s, resource)))!));
  t.same(Buffer.from(second!.body), Buffer.from(ProtobufTraceSerializer.serializeRequest([...list.slice(4), list[0]!].map((s) => readable(s, resource)))!));
});

t.test('a span undone (a full queue) leaves no trace in the next export', async (t) => {
  const resource = defaultResource();
  const [a, b] = specs();
  const spans = new OtlpSpans(resource, SCOPE, UNCUT);
  write(spans, a!);
  const mark = spans.mark();
  write(spans, b!);
  spans.undo(mark);
  t.equal(spans.count, 1);
  t.same(Buffer.from(spans.take(10)!.body), Buffer.from(ProtobufTraceSerializer.serializeRequest([readable(a!, resource)])!));
});

/** `spec` with its name, string attributes and status message cut at `limit` characters, as the SDK's span limits cut them. */
function cut(spec: SpanSpec, limit: number): SpanSpec {
  const text = (v: string): string => v.slice(0, limit);
  return {
    ...spec,
    name: text(spec.name),
    attributes: spec.attributes?.map(([k, v]) => [k, typeof v === 'string' ? text(v) : v] as const),
    ...(spec.error === undefined ? {} : { error: text(spec.error) }),
  };
}

t.test("a client's long texts are cut: the serializer's bytes for the cut spans", async (t) => {
  const resource = defaultResource();
  const huge = 'q'.repeat(3_000_000);
  const list: SpanSpec[] = [
    ...specs(),
    { ...specs()[1]!, name: `prediction ${huge}`, attributes: [['tsserve.model.name', huge]], error: `Model not found: ${huge}` },
  ];
  const theirs = ProtobufTraceSerializer.serializeRequest(list.map((s) => readable(cut(s, 256), resource)));
  for (const prewritten of [false, true]) {
    const spans = new OtlpSpans(resource, SCOPE, 256);
    for (const spec of list) write(spans, spec, prewritten);
    t.ok(spans.bytes < 8 * 1024, `the spans take ${spans.bytes} bytes`);
    const ours = spans.take(list.length);
    t.same(Buffer.from(ours!.body), Buffer.from(theirs!), `each text cut at 256 characters${prewritten ? ', names and attributes written beforehand' : ''}`);
  }
});

t.test('an export holds no more bytes of spans than asked, one span at least', async (t) => {
  const resource = defaultResource();
  const list = specs();
  const spans = new OtlpSpans(resource, SCOPE, UNCUT);
  for (const spec of list) write(spans, spec);
  const all = spans.bytes;
  const first = spans.take(100, 1);
  t.equal(first?.count, 1, 'a budget smaller than a span: one span');
  const rest = spans.take(100, all);
  t.equal(rest?.count, list.length - 1, 'the rest fit');
  t.equal(spans.bytes, 0, 'nothing left');
});

t.test('the buffer a burst grew gives its room back once taken', async (t) => {
  const spans = new OtlpSpans(defaultResource(), SCOPE, UNCUT);
  const big: SpanSpec = { ...specs()[1]!, name: 'x'.repeat(4 * 1024 * 1024) };
  write(spans, big);
  const grown = (spans as unknown as { writer: { buffer: Uint8Array } }).writer.buffer.length;
  spans.take(1);
  const after = (spans as unknown as { writer: { buffer: Uint8Array } }).writer.buffer.length;
  t.ok(grown > 4 * 1024 * 1024 && after <= 64 * 1024, `grown to ${grown} bytes, back to ${after}`);
});

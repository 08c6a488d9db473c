// The OTEL_* variables as metrics/tracing.ts reads them: when tracing is on, which sampler, and
// the trace context's header form.
import t from 'tap';
import { TraceFlags } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { decodeTraces, type ReceivedSpan } from '../../test/otlp-traces.js';
import { samplerFromEnv, traceHeaderOf, Tracing, tracingWanted, type SpanExporter } from './tracing.js';

const key = (on: boolean) => ({ otelTraces: on, otelTraceHeader: 'traceresponse' });

t.test('on with otel_traces or OTEL_TRACES_EXPORTER=otlp; none and OTEL_SDK_DISABLED win', async (t) => {
  t.equal(tracingWanted(key(false), {}), false, 'off by default');
  t.equal(tracingWanted(key(true), {}), true);
  t.equal(tracingWanted(key(false), { OTEL_TRACES_EXPORTER: 'otlp' }), true);
  t.equal(tracingWanted(key(false), { OTEL_TRACES_EXPORTER: 'console, OTLP' }), true, 'a list, any case');
  t.equal(tracingWanted(key(false), { OTEL_TRACES_EXPORTER: 'zipkin' }), false, 'an exporter we do not ship');
  t.equal(tracingWanted(key(true), { OTEL_TRACES_EXPORTER: 'none' }), false);
  t.equal(tracingWanted(key(true), { OTEL_SDK_DISABLED: 'true' }), false);
});

t.test('OTEL_TRACES_SAMPLER and _ARG as the specification names them', async (t) => {
  t.match(samplerFromEnv({}).toString(), /ParentBased\{root=AlwaysOnSampler/, 'parentbased_always_on by default');
  t.match(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'always_off' }).toString(), 'AlwaysOffSampler');
  t.match(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }).toString(), 'TraceIdRatioBased{0.25}');
  t.match(
    samplerFromEnv({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' }).toString(),
    /ParentBased\{root=TraceIdRatioBased\{0.1\}/,
  );
  t.match(
    samplerFromEnv({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '7' }).toString(),
    'TraceIdRatioBased{1}',
    'a ratio out of [0, 1] is 1',
  );
  t.match(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'nonsense' }).toString(), /ParentBased\{root=AlwaysOnSampler/);
});

t.test("the header's form is traceparent's", async (t) => {
  const context = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', isRemote: false };
  t.equal(traceHeaderOf({ ...context, traceFlags: TraceFlags.SAMPLED }), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  t.equal(traceHeaderOf({ ...context, traceFlags: TraceFlags.NONE }), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00');
});

/** Tracing exporting to an array of the spans its exports' bodies decode to, which its stop fills. */
function inMemoryTracing(): { tracing: Tracing; spans: ReceivedSpan[] } {
  const spans: ReceivedSpan[] = [];
  const exporter: SpanExporter = {
    export: (batch, done) => {
      spans.push(...decodeTraces(Buffer.from(batch.body)));
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: async () => {},
  };
  return { tracing: new Tracing(key(true), exporter, samplerFromEnv({}), { OTEL_BSP_SCHEDULE_DELAY: '600000' }), spans };
}

t.test("sub-millisecond predictions: every span ends on its start's clock, after it, and within its parent", async (t) => {
  const { tracing, spans } = inMemoryTracing();
  const model = { name: 'm', version: '1' };
  for (let i = 0; i < 20; i++) {
    const request = tracing.startRequest(model, `r${i}`, {}, performance.now());
    const batch = tracing.startBatch(model, 'w', [request], performance.now());
    batch?.end([]);
    request.end(200);
  }
  await tracing.shutdown(() => {});
  t.equal(spans.length, 60, 'a prediction, its queue and its batch, 20 times');
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  for (const s of spans) {
    t.ok(s.endMs > s.startMs || s.name.startsWith('queue'), `${s.name}: ends after it starts`);
    const parent = byId.get(s.parentSpanId);
    if (!parent) continue;
    t.ok(s.startMs >= parent.startMs && s.endMs <= parent.endMs, `${s.name}: within ${parent.name}`);
  }
});

t.test("the request's tracestate is carried by every span of its trace, not only the server's", async (t) => {
  const { tracing, spans } = inMemoryTracing();
  const model = { name: 'm', version: '1' };
  const headers = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'a=b' };
  const request = tracing.startRequest(model, 'r', headers, performance.now());
  const batch = tracing.startBatch(model, 'w', [request], performance.now());
  const at = performance.timeOrigin + performance.now();
  batch?.end([{ name: 'inference', start: at, end: at }]);
  request.end(200);
  await tracing.shutdown(() => {});
  t.same(spans.map((s) => s.name).sort(), ['batch m', 'inference', 'prediction m', 'queue m']);
  for (const s of spans) t.equal(s.traceState, 'a=b', `${s.name}: tracestate a=b`);
});

t.test('a collector that never answers holds the stop STOP_FLUSH_MS at most, and one line says what was dropped', async (t) => {
  let answer: Parameters<SpanExporter['export']>[1] | undefined;
  const exporter: SpanExporter = { export: (_spans, resultCallback) => (answer = resultCallback), shutdown: async () => {} };
  // The export's own timeout (the OTLP exporter's is 10 s) only ends the test's process sooner.
  // The stop's wait is STOP_FLUSH_MS (a second) in a server; 50 ms here, the same bound.
  const stopFlushMs = 50;
  const tracing = new Tracing(key(true), exporter, samplerFromEnv({}), { OTEL_BSP_SCHEDULE_DELAY: '600000', OTEL_BSP_EXPORT_TIMEOUT: '3000' }, stopFlushMs);
  tracing.startRequest({ name: 'm', version: '1' }, 'r', {}, performance.now()).end(200);
  const warnings: string[] = [];
  const began = performance.now();
  await Promise.race([tracing.shutdown((m) => warnings.push(m)), new Promise((r) => setTimeout(r, 10_000).unref())]);
  t.ok(performance.now() - began < stopFlushMs + 2000, 'the stop does not wait for the collector');
  t.same(warnings, [`OpenTelemetry: 2 of 2 spans dropped, not exported: the collector did not take them within ${stopFlushMs} ms of the stop`]);
  // The collector answers at last: the export's timeout, which an export under way holds, ends with it.
  answer?.({ code: ExportResultCode.FAILED });
});

t.test('what tsserve does not do is said at start, one line each: an exporter but otlp, a protocol but http/protobuf', async (t) => {
  const started = (config: ReturnType<typeof key>, env: NodeJS.ProcessEnv): { on: boolean; warnings: string[] } => {
    const warnings: string[] = [];
    const tracing = Tracing.fromConfig(config, { info: () => {}, warn: (m) => warnings.push(m) }, env);
    void tracing?.shutdown(() => {});
    return { on: tracing !== undefined, warnings };
  };
  t.same(started(key(false), { OTEL_TRACES_EXPORTER: 'zipkin' }), {
    on: false,
    warnings: ['OpenTelemetry: OTEL_TRACES_EXPORTER=zipkin: zipkin not supported (otlp or none), traces are off'],
  });
  t.same(started(key(false), { OTEL_TRACES_EXPORTER: 'console,otlp' }), {
    on: true,
    warnings: ['OpenTelemetry: OTEL_TRACES_EXPORTER=console,otlp: console not supported (otlp or none), ignored'],
  });
  t.same(started(key(true), { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), {
    on: true,
    warnings: ['OpenTelemetry: OTEL_EXPORTER_OTLP_PROTOCOL=grpc not supported: spans go as OTLP/HTTP protobuf (http/protobuf)'],
  });
  t.same(started(key(true), { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' }).warnings, [
    'OpenTelemetry: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json not supported: spans go as OTLP/HTTP protobuf (http/protobuf)',
  ]);
  t.same(started(key(true), { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }).warnings, [], 'what tsserve does: nothing said');
});

t.test("a model's spans name it and its version as they are now, written once per model and again when they change", async (t) => {
  const { tracing, spans } = inMemoryTracing();
  const model = { name: 'm', version: '1' };
  const predict = (): void => {
    const request = tracing.startRequest(model, 'r', {}, performance.now());
    tracing.startBatch(model, 'w', [request], performance.now())?.end([]);
    request.end(200);
  };
  predict();
  predict();
  model.version = '2';
  predict();
  model.name = 'n';
  predict();
  await tracing.shutdown(() => {});
  const of = (name: string) => spans.filter((s) => s.name === name).map((s) => s.attributes['tsserve.model.version']);
  t.same(of('prediction m'), ['1', '1', '2'], "the version each prediction's span had");
  t.same(of('prediction n'), ['2']);
  t.same(
    spans.filter((s) => s.name.startsWith('batch')).map((s) => [s.name, s.attributes['tsserve.model.name']]),
    [
      ['batch m', 'm'],
      ['batch m', 'm'],
      ['batch m', 'm'],
      ['batch n', 'n'],
    ],
  );
});

t.test('ids are W3C ids: hex of 32 and 16 digits, never all zeros, each span its own, the stages included', async (t) => {
  const { tracing, spans } = inMemoryTracing();
  const model = { name: 'm', version: '1' };
  for (let i = 0; i < 200; i++) {
    const request = tracing.startRequest(model, `r${i}`, {}, performance.now());
    const at = performance.timeOrigin + performance.now();
    const stages = (['preprocess', 'inference', 'postprocess'] as const).map((name) => ({ name, start: at, end: at }));
    tracing.startBatch(model, 'w', [request], performance.now())?.end(stages);
    request.end(200);
  }
  await tracing.shutdown(() => {});
  t.equal(spans.length, 200 * 6, 'six spans a prediction');
  t.ok(
    spans.every((s) => /^[0-9a-f]{32}$/.test(s.traceId) && !/^0+$/.test(s.traceId)),
    'trace ids',
  );
  t.ok(
    spans.every((s) => /^[0-9a-f]{16}$/.test(s.spanId) && !/^0+$/.test(s.spanId)),
    'span ids',
  );
  t.equal(new Set(spans.map((s) => s.spanId)).size, spans.length, 'no two spans share an id');
  t.equal(new Set(spans.map((s) => s.traceId)).size, 200, 'a trace per prediction');
  const batches = new Map(spans.filter((s) => s.name === 'batch m').map((s) => [s.spanId, s]));
  const stages = spans.filter((s) => ['preprocess', 'inference', 'postprocess'].includes(s.name));
  t.ok(
    stages.every((s) => batches.get(s.parentSpanId)?.traceId === s.traceId),
    "each stage a child of its batch's span, in its trace",
  );
});

t.test("spans are written once the task that ended them is over: a batch's answers all leave first", async (t) => {
  let exports = 0;
  const exporter: SpanExporter = {
    export: (_batch, done) => {
      exports++;
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: async () => {},
  };
  // Two spans make an export: one starts as soon as a prediction's spans are written.
  const tracing = new Tracing(key(true), exporter, samplerFromEnv({}), { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2', OTEL_BSP_SCHEDULE_DELAY: '600000' });
  const model = { name: 'm', version: '1' };
  const requests = [0, 1, 2].map((i) => tracing.startRequest(model, `r${i}`, {}, performance.now()));
  tracing.startBatch(model, 'w', requests, performance.now())?.end([]);
  for (const r of requests) r.end(200);
  t.equal(exports, 0, 'nothing written while the batch is being answered');
  await Promise.resolve();
  t.ok(exports >= 1, 'written, and exported, right after');
  await tracing.shutdown(() => {});
});

t.test('ids kept as bytes stay right across blocks of random bytes: headers, parents and links agree with the spans exported', async (t) => {
  const { tracing, spans } = inMemoryTracing();
  const model = { name: 'm', version: '1' };
  // 2,000 predictions in batches of 8 take 400 bytes of ids a batch, 100 KB: more than one 64 KB block.
  const clientSpan = 'b7ad6b7169203331';
  const headers = new Map<string, string>();
  for (let b = 0; b < 250; b++) {
    const requests = Array.from({ length: 8 }, (_, i) => {
      // Every third request continues a client's trace: its ids read from the traceparent's hex.
      const client: Record<string, string> = (b * 8 + i) % 3 === 0 ? { traceparent: `00-${(b * 8 + i).toString(16).padStart(32, 'a')}-${clientSpan}-01` } : {};
      const request = tracing.startRequest(model, `r${b * 8 + i}`, client, performance.now());
      headers.set(`r${b * 8 + i}`, request.header);
      return request;
    });
    const at = performance.timeOrigin + performance.now();
    const stages = (['preprocess', 'inference', 'postprocess'] as const).map((name) => ({ name, start: at, end: at }));
    tracing.startBatch(model, 'w', requests, performance.now())?.end(stages);
    for (const r of requests) r.end(200);
  }
  await tracing.shutdown(() => {});
  t.equal(spans.length, 2000 * 2 + 250 * 4, 'a prediction and its queue, each; a batch and its three stages, each');
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const predictions = spans.filter((s) => s.name === 'prediction m');
  const wrong = (what: string, bad: unknown[]): void => {
    t.same(bad, [], what);
  };
  wrong(
    "each prediction's span is the one its traceresponse names",
    predictions.filter((s) => headers.get(String(s.attributes['tsserve.request.id'])) !== `00-${s.traceId}-${s.spanId}-01`),
  );
  wrong(
    "a client's trace is continued: its trace id, its span the parent; others are roots",
    predictions.filter((s) => {
      const n = Number(String(s.attributes['tsserve.request.id']).slice(1));
      return n % 3 === 0 ? s.traceId !== n.toString(16).padStart(32, 'a') || s.parentSpanId !== clientSpan : s.parentSpanId !== '';
    }),
  );
  wrong(
    "each queue span a child of its prediction's, in its trace",
    spans.filter((s) => s.name === 'queue m' && byId.get(s.parentSpanId)?.traceId !== s.traceId),
  );
  const batches = spans.filter((s) => s.name === 'batch m');
  wrong(
    "each batch a child of its first prediction's span, in its trace, linking its 8 predictions, which link back",
    batches.filter((b) => {
      const linked = b.links.map((l) => byId.get(l.spanId));
      return (
        linked.length !== 8 ||
        byId.get(b.parentSpanId) !== linked[0] ||
        b.traceId !== linked[0]?.traceId ||
        linked.some((p, i) => p?.traceId !== b.links[i]?.traceId || p?.links[0]?.spanId !== b.spanId || p.links[0]?.traceId !== b.traceId)
      );
    }),
  );
  wrong(
    "each stage a child of its batch's span, in its trace",
    spans.filter((s) => ['preprocess', 'inference', 'postprocess'].includes(s.name) && byId.get(s.parentSpanId)?.name !== 'batch m'),
  );
  t.equal(new Set(spans.map((s) => s.spanId)).size, spans.length, 'no two spans share an id');
});

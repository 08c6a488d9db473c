// The OTEL_* variables as metrics/tracing.ts reads them: when tracing is on, which sampler, and
// the trace context's header form.
import t from 'tap';
import { TraceFlags } from '@opentelemetry/api';
import { samplerFromEnv, traceHeaderOf, tracingWanted } from './tracing.js';

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

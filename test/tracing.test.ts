// OpenTelemetry traces (metrics/tracing.ts) seen by a real OTLP/HTTP receiver: a prediction with
// the client's traceparent continues its trace, with the queue, the batch and the worker's stages
// (spans made in the worker process, children of the batch's span); a batch of 8 links its 8
// requests; every inference route (REST, KServe v1/v2, gRPC, OIP) honours traceparent; and the
// stage and request histograms count what the worker timed.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { grpcClient, streamPredictions2 } from './grpc-client.js';
import { buildMar, buildMnistMar, FIXTURES, freePort, MNIST_DIR, startTestServer, waitFor, waitReady, type TestServer } from './helpers.js';
import { STOP_FLUSH_MS } from '../src/metrics/tracing.js';
import { otlpReceiver, type OtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';

const SEVEN = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
/** OTLP's SpanKind: SPAN_KIND_INTERNAL 1, SPAN_KIND_SERVER 2. */
const INTERNAL = 1;
const SERVER = 2;

/** A client's own trace context: a new trace id and its span's id. */
function clientContext(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** A server exporting its traces to `receiver`, every `scheduleDelayMs`. */
async function tracedServer(
  t: Test,
  receiver: OtlpReceiver,
  prepare: (store: string) => void,
  properties: Record<string, string> = {},
  scheduleDelayMs = 100,
  serverLog?: (line: string) => void,
): Promise<TestServer> {
  const env = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: String(scheduleDelayMs), OTEL_SERVICE_NAME: 'tsserve-under-test' };
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await startTestServer(t, {
      prepare,
      properties: { otel_traces: 'true', ...properties },
      ...(serverLog ? { serverLog, level: 'info' as const } : {}),
    });
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** A traced server with the echo model loaded and ready. */
async function tracedEcho(t: Test, receiver: OtlpReceiver, properties: Record<string, string> = {}): Promise<TestServer> {
  const echo = (store: string) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
  const server = await tracedServer(t, receiver, echo, { load_models: 'echo.mar', ...properties });
  await waitReady(server.urls.management, 'echo');
  return server;
}

/**
 * One traced echo server (with OIP's gRPC service) and its receiver, for the tests that only ask
 * it questions: each finds its spans and access lines by the trace ids it sent, so that what the
 * others sent before is no matter. Started by the first such test, closed when the file ends.
 */
let askedEcho: Promise<{ server: TestServer; receiver: OtlpReceiver }> | undefined;
function sharedEcho(): Promise<{ server: TestServer; receiver: OtlpReceiver }> {
  askedEcho ??= otlpReceiver(t).then(async (receiver) => ({ receiver, server: await tracedEcho(t, receiver, { ts_open_inference_protocol: 'true' }) }));
  return askedEcho;
}

async function spansArrived(receiver: OtlpReceiver, what: string, check: (spans: ReceivedSpan[]) => boolean): Promise<void> {
  await waitFor(() => check(receiver.spans), 20_000, what);
}

function one(t: Test, spans: ReceivedSpan[], name: string): ReceivedSpan {
  const found = spans.filter((s) => s.name === name);
  t.equal(found.length, 1, `one ${name} span`);
  return found[0]!;
}

t.test("one prediction with a traceparent: the client's trace, the queue, the batch, and the worker's stages as the batch's children", async (t) => {
  const receiver = await otlpReceiver(t);
  const server = await tracedServer(t, receiver, (store) => buildMnistMar(store), { load_models: 'mnist.mar' });
  await waitReady(server.urls.management, 'mnist');
  const client = clientContext();
  const res = await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: SEVEN, headers: { traceparent: client.traceparent } });
  t.equal(res.status, 200);
  t.equal(await res.text(), '7');
  const header = res.headers.get('traceresponse') ?? '';
  t.match(header, new RegExp(`^00-${client.traceId}-[0-9a-f]{16}-01$`), "the answer's traceresponse names the client's trace");

  await spansArrived(receiver, 'the six spans of the prediction', (spans) => spans.filter((s) => s.traceId === client.traceId).length >= 6);
  const spans = receiver.spans.filter((s) => s.traceId === client.traceId);
  const request = one(t, spans, 'prediction mnist');
  t.equal(request.parentSpanId, client.spanId, "the server span is the client span's child");
  t.equal(request.kind, SERVER);
  t.equal(request.spanId, header.split('-')[2], 'traceresponse names the server span');
  t.equal(request.attributes['http.response.status_code'], 200);
  t.equal(request.resource['service.name'], 'tsserve-under-test', 'OTEL_SERVICE_NAME names the service');
  const queue = one(t, spans, 'queue mnist');
  t.equal(queue.parentSpanId, request.spanId, 'the wait in the queue is a child of the request');
  const batch = one(t, spans, 'batch mnist');
  t.equal(batch.parentSpanId, request.spanId, 'the batch is a child of its (first) request');
  t.same(batch.links, [{ traceId: client.traceId, spanId: request.spanId }], 'and linked to it');
  t.same(request.links, [{ traceId: client.traceId, spanId: batch.spanId }], 'the request links back to its batch');
  t.equal(batch.attributes['tsserve.batch.size'], 1);
  t.ok(queue.endMs <= batch.startMs + 1, 'the wait ends as the batch leaves');
  const stages = ['preprocess', 'inference', 'postprocess'].map((name) => one(t, spans, name));
  for (const s of stages) {
    t.equal(s.parentSpanId, batch.spanId, `${s.name}: a child of the batch span, across the process boundary`);
    t.equal(s.kind, INTERNAL);
    // Both processes' clocks are the wall clock's; a few ms of skew at most.
    t.ok(s.startMs >= batch.startMs - 5 && s.endMs <= batch.endMs + 5, `${s.name} runs within its batch`);
  }
  t.ok(stages[0]!.endMs <= stages[1]!.startMs && stages[1]!.endMs <= stages[2]!.startMs, 'preprocess, inference, postprocess in order');
  t.ok(request.startMs <= queue.startMs && batch.endMs <= request.endMs + 1, 'the request spans them all');
  t.same([...receiver.contentTypes], ['application/x-protobuf'], 'OTLP/HTTP protobuf');

  const text = await (await fetch(`${server.urls.metrics!}/metrics`)).text();
  for (const name of ['ts_request_seconds', 'ts_queue_wait_seconds', 'ts_preprocess_seconds', 'ts_inference_seconds', 'ts_postprocess_seconds']) {
    t.match(text, new RegExp(`${name}_count\\{model_name="mnist",model_version="1.0",hostname="[^"]+",\\} 1.0\\n`), `${name} counts the prediction`);
    t.match(text, new RegExp(`${name}_bucket\\{model_name="mnist",model_version="1.0",hostname="[^"]+",le="0.0005",\\} `), `${name} has the shared buckets`);
  }

  const access = join(server.dir, 'logs', 'access_log.log');
  await waitFor(() => readFileSync(access, 'utf8').includes('/predictions/mnist'), 10_000, 'the access line');
  t.match(
    readFileSync(access, 'utf8'),
    new RegExp(`"POST /predictions/mnist HTTP/1.1" 200 \\d+ trace_id=${client.traceId}\\n`),
    'the access line has the trace id',
  );
});

t.test('a batch of 8 concurrent predictions: one batch span linked to the 8 requests, the worker spans its children', async (t) => {
  const receiver = await otlpReceiver(t);
  const server = await tracedServer(t, receiver, (store) => buildMnistMar(store));
  const query = new URLSearchParams({ url: 'mnist.mar', batch_size: '8', max_batch_delay: '30000', initial_workers: '1', synchronous: 'true' });
  t.equal((await fetch(`${server.urls.management}/models?${query}`, { method: 'POST' })).status, 200);
  const clients = Array.from({ length: 8 }, clientContext);
  const answers = await Promise.all(
    clients.map((c) =>
      fetch(`${server.urls.inference}/predictions/mnist`, {
        method: 'POST',
        body: SEVEN,
        headers: { traceparent: c.traceparent },
        signal: AbortSignal.timeout(60_000),
      }),
    ),
  );
  t.same(
    answers.map((a) => a.status),
    Array(8).fill(200),
  );
  await spansArrived(
    receiver,
    'the batch and its stages',
    (spans) => spans.filter((s) => s.name === 'postprocess').length >= 1 && spans.filter((s) => s.name === 'prediction mnist').length >= 8,
  );
  const batch = one(t, receiver.spans, 'batch mnist');
  t.equal(batch.attributes['tsserve.batch.size'], 8);
  const requests = receiver.spans.filter((s) => s.name === 'prediction mnist');
  t.same(batch.links.map((l) => l.traceId).sort(), clients.map((c) => c.traceId).sort(), "the batch links every request, each in its client's trace");
  t.same(batch.links.map((l) => l.spanId).sort(), requests.map((r) => r.spanId).sort(), "the links name the requests' server spans");
  for (const r of requests) t.same(r.links, [{ traceId: batch.traceId, spanId: batch.spanId }], 'each request links to the batch');
  t.ok(
    requests.some((r) => r.spanId === batch.parentSpanId),
    'the batch is in the trace of one of its requests',
  );
  for (const name of ['preprocess', 'inference', 'postprocess']) {
    const s = one(t, receiver.spans, name);
    t.equal(s.parentSpanId, batch.spanId, `${name} is the batch's child`);
    t.equal(s.traceId, batch.traceId);
  }
  const text = await (await fetch(`${server.urls.metrics!}/metrics`)).text();
  t.match(text, /ts_inference_seconds_count\{model_name="mnist",model_version="1.0",hostname="[^"]+",\} 8.0\n/, 'one batch, counted once per request');
});

t.test('every inference route honours traceparent: REST predictions and explanations, KServe v1 and v2, gRPC and OIP', async (t) => {
  const { server, receiver } = await sharedEcho();
  const sent: Array<{ route: string; traceId: string; spanId: string }> = [];
  const rest = async (route: string, path: string, body: string): Promise<void> => {
    const c = clientContext();
    const res = await fetch(`${server.urls.inference}${path}`, {
      method: 'POST',
      body,
      headers: { traceparent: c.traceparent, 'content-type': 'application/json' },
    });
    await res.arrayBuffer();
    t.match(res.headers.get('traceresponse'), new RegExp(`^00-${c.traceId}-`), `${route}: traceresponse`);
    sent.push({ route, ...c });
  };
  await rest('REST predictions', '/predictions/echo', '"hello"');
  await rest('REST explanations', '/explanations/echo', '"hello"');
  await rest('KServe v1', '/v1/models/echo:predict', '{"instances": [1]}');
  await rest('KServe v2', '/v2/models/echo/infer', '{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}');
  const viaGrpc = async (route: string, client: ReturnType<typeof grpcClient>, method: string, request: object): Promise<void> => {
    const c = clientContext();
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', c.traceparent);
    const answered = await new Promise<{ head: grpc.Metadata | undefined; code: number }>((resolve) => {
      let head: grpc.Metadata | undefined;
      const call = client[method]!(request, metadata, (err) => resolve({ head, code: err?.code ?? grpc.status.OK })) as unknown as grpc.ClientUnaryCall;
      call.on('metadata', (m: grpc.Metadata) => {
        head = m;
      });
    });
    t.match(String(answered.head?.get('traceresponse')[0]), new RegExp(`^00-${c.traceId}-`), `${route}: traceresponse in the response metadata`);
    sent.push({ route, ...c });
  };
  const inference = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  await viaGrpc('gRPC Predictions', inference, 'Predictions', { model_name: 'echo', input: { data: Buffer.from('hello') } });
  const oip = grpcClient(t, server.urls.grpcInference, 'open_inference_grpc.proto', 'org.pytorch.serve.grpc.openinference.GRPCInferenceService');
  await viaGrpc('OIP ModelInfer', oip, 'ModelInfer', {
    model_name: 'echo',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1], contents: { fp32_contents: [1] } }],
  });

  await spansArrived(receiver, 'a server span per route', (spans) => sent.every((s) => spans.some((r) => r.traceId === s.traceId && r.kind === SERVER)));
  for (const s of sent) {
    const server = receiver.spans.find((r) => r.traceId === s.traceId && r.kind === SERVER)!;
    t.equal(server.parentSpanId, s.spanId, `${s.route}: the server span continues the client's`);
    t.ok(
      receiver.spans.some((r) => r.traceId === s.traceId && r.name === 'inference'),
      `${s.route}: the worker's stage is in the trace`,
    );
  }
  const access = join(server.dir, 'logs', 'access_log.log');
  await waitFor(() => readFileSync(access, 'utf8').includes('ModelInfer'), 10_000, 'the gRPC access lines');
  const log = readFileSync(access, 'utf8');
  for (const s of sent) t.match(log, `trace_id=${s.traceId}`, `${s.route}: the access line has the trace id`);
});

t.test("gRPC StreamPredictions2: the stream's response metadata carries its first prediction's traceresponse, its access line the trace id", async (t) => {
  const { server } = await sharedEcho();
  const inference = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  const c = clientContext();
  const metadata = new grpc.Metadata();
  metadata.set('traceparent', c.traceparent);
  const messages = ['one', 'two'].map((word) => ({ model_name: 'echo', input: { data: Buffer.from(word), ts_request_sequence_start: Buffer.from('true') } }));
  const { head, replies } = await streamPredictions2(inference, metadata, messages);
  t.same(
    replies.map((r) => r.status?.code ?? 0),
    [0, 0],
    'both answered',
  );
  t.match(String(head?.get('traceresponse')[0]), new RegExp(`^00-${c.traceId}-[0-9a-f]{16}-01$`), 'traceresponse in the response metadata');
  const access = join(server.dir, 'logs', 'access_log.log');
  await waitFor(() => readFileSync(access, 'utf8').includes('StreamPredictions2'), 10_000, "the stream's access line");
  t.match(readFileSync(access, 'utf8'), new RegExp(`StreamPredictions2.* trace_id=${c.traceId}`), 'the access line has the trace id');
});

t.test("a handler's context.traceparent is its batch span's, in the client's trace, to pass on to what it calls", async (t) => {
  const { server, receiver } = await sharedEcho();
  const c = clientContext();
  const res = await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'traceparent', headers: { traceparent: c.traceparent } });
  t.equal(res.status, 200);
  const seen = await res.text();
  await spansArrived(receiver, 'the batch span', (spans) => spans.some((s) => s.traceId === c.traceId && s.name === 'batch echo'));
  const batch = one(
    t,
    receiver.spans.filter((s) => s.traceId === c.traceId),
    'batch echo',
  );
  t.equal(seen, `00-${c.traceId}-${batch.spanId}-01`, 'the handler saw the batch span as a W3C traceparent');
});

t.test('with tracing off (the default) no header, no trace id in the log, and the histograms still count', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar' } });
  await waitReady(server.urls.management, 'mnist');
  const res = await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: SEVEN, headers: { traceparent: clientContext().traceparent } });
  t.equal(res.status, 200);
  t.equal(res.headers.get('traceresponse'), null);
  const text = await (await fetch(`${server.urls.metrics!}/metrics`)).text();
  t.match(text, /ts_postprocess_seconds_count\{model_name="mnist",model_version="1.0",hostname="[^"]+",\} 1.0\n/);
  const access = join(server.dir, 'logs', 'access_log.log');
  await waitFor(() => readFileSync(access, 'utf8').includes('/predictions/mnist'), 10_000, 'the access line');
  t.notMatch(readFileSync(access, 'utf8'), 'trace_id=');
});

t.test("a worker that dies in a traced batch: the batch span and the request's end in error, the next one is traced as usual", async (t) => {
  const receiver = await otlpReceiver(t);
  const server = await tracedEcho(t, receiver);
  const dying = clientContext();
  const res = await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'exit', headers: { traceparent: dying.traceparent } });
  t.equal(res.status, 500);
  t.match(res.headers.get('traceresponse'), new RegExp(`^00-${dying.traceId}-`), 'an error answer names its trace too');
  await spansArrived(receiver, 'the spans of the prediction the worker died in', (spans) => spans.filter((s) => s.traceId === dying.traceId).length >= 3);
  const spans = receiver.spans.filter((s) => s.traceId === dying.traceId);
  const request = one(t, spans, 'prediction echo');
  t.equal(request.attributes['http.response.status_code'], 500);
  t.equal(request.statusCode, 2, 'the request span: STATUS_CODE_ERROR');
  t.equal(one(t, spans, 'batch echo').statusCode, 2, 'the batch span too, ended by the front end when the worker died');
  t.notOk(
    spans.some((s) => s.name === 'inference'),
    'no stage of the worker that died',
  );

  await waitReady(server.urls.management, 'echo');
  const next = clientContext();
  const ok = await fetch(`${server.urls.inference}/predictions/echo`, { method: 'POST', body: 'hello', headers: { traceparent: next.traceparent } });
  t.equal(ok.status, 200);
  await spansArrived(receiver, "the replacement worker's stage", (all) => all.some((s) => s.traceId === next.traceId && s.name === 'inference'));
});

t.test("a server's stop exports the spans it holds: none of the last answers' traces is lost", async (t) => {
  const receiver = await otlpReceiver(t);
  // An export every 10 minutes: only the stop sends these.
  const server = await tracedServer(t, receiver, (store) => buildMnistMar(store), { load_models: 'mnist.mar' }, 600_000);
  await waitReady(server.urls.management, 'mnist');
  const client = clientContext();
  const res = await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: SEVEN, headers: { traceparent: client.traceparent } });
  t.equal(res.status, 200);
  await new Promise((r) => setTimeout(r, 500));
  t.equal(receiver.spans.length, 0, 'nothing exported before the stop');
  await server.close();
  t.equal(receiver.spans.filter((s) => s.traceId === client.traceId).length, 6, "the prediction's six spans, exported as the server stopped");
});

t.test('a collector that is down: the log says where spans go, then warns once that the export failed; predictions answer as usual', async (t) => {
  const lines: string[] = [];
  const closed = { url: `http://127.0.0.1:${await freePort()}/v1/traces`, spans: [], contentTypes: new Set<string>() };
  // The exporter retries a refused export with backoff until its timeout (10 s by default) before
  // it reports the failure: a 1 s one says the same sooner.
  const timeout = process.env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT;
  process.env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT = '1000';
  t.teardown(() => {
    if (timeout === undefined) delete process.env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT;
    else process.env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT = timeout;
  });
  const server = await tracedServer(
    t,
    closed,
    (store) => buildMnistMar(store),
    { load_models: 'mnist.mar' },
    100,
    (line) => lines.push(line),
  );
  await waitReady(server.urls.management, 'mnist');
  t.match(lines.join(''), `OpenTelemetry traces on: OTLP/HTTP to ${closed.url}, sampler ParentBased{root=AlwaysOnSampler`);
  for (let i = 0; i < 3; i++) t.equal((await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: SEVEN })).status, 200);
  await waitFor(() => lines.some((l) => l.includes('OpenTelemetry: ')), 30_000, 'the export failure in the log');
  t.ok(lines.filter((l) => l.includes('OpenTelemetry: ')).length <= 3, 'said once, not per export');
});

t.test('a collector that never answers: the stop waits drain_timeout plus STOP_FLUSH_MS at most, and one line says what was dropped', async (t) => {
  // Accepts connections and never answers: each export waits for its timeout.
  const held: ServerResponse[] = [];
  const silent = createServer((_req, res) => held.push(res));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  // The exporter of the stopped server (in this process) still waits for its export, for its 10 s
  // timeout and retries after a failure: answered once the test is over, it is done, and neither
  // close() nor this process's end waits for it.
  t.teardown(() => {
    for (const res of held) res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    return new Promise<void>((resolve) => silent.close(() => resolve()));
  });
  const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/v1/traces`;
  const lines: string[] = [];
  const drainSeconds = 2;
  const server = await tracedServer(
    t,
    { url: silentUrl, spans: [], contentTypes: new Set<string>() },
    (store) => buildMnistMar(store),
    { load_models: 'mnist.mar', drain_timeout: String(drainSeconds) },
    600_000,
    (line) => lines.push(line),
  );
  await waitReady(server.urls.management, 'mnist');
  t.equal((await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: SEVEN })).status, 200);
  const began = performance.now();
  await server.close();
  const took = performance.now() - began;
  t.ok(took < drainSeconds * 1000 + STOP_FLUSH_MS + 1000, `stopped in ${Math.round(took)} ms, not the exporter's 10 s timeout`);
  t.equal(lines.filter((l) => l.includes('spans dropped')).length, 1, 'one line says what was dropped');
  t.match(lines.join(''), /OpenTelemetry: 6 of 6 spans dropped, not exported/);
});

t.test('fast predictions with a tracestate: every span carries it, ends after it starts and within its parent, on one clock', async (t) => {
  const { server, receiver } = await sharedEcho();
  const clients = Array.from({ length: 10 }, clientContext);
  for (const c of clients) {
    const res = await fetch(`${server.urls.inference}/predictions/echo`, {
      method: 'POST',
      body: 'hi',
      headers: { traceparent: c.traceparent, tracestate: 'a=b' },
    });
    t.equal(res.status, 200);
  }
  const ids = new Set(clients.map((c) => c.traceId));
  await spansArrived(receiver, 'the spans of 10 predictions', (spans) => spans.filter((s) => ids.has(s.traceId) && s.name === 'inference').length >= 10);
  await spansArrived(receiver, 'their server spans', (spans) => spans.filter((s) => ids.has(s.traceId) && s.kind === SERVER).length >= 10);
  const spans = receiver.spans.filter((s) => ids.has(s.traceId));
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  t.same([...new Set(spans.map((s) => s.traceState))], ['a=b'], 'every span, the server one and its children, carries tracestate a=b');
  for (const s of spans) {
    t.ok(s.endMs >= s.startMs, `${s.name}: ends after it starts`);
    const parent = byId.get(s.parentSpanId);
    // Only the front end's spans: the worker's stages are on its own process's clock.
    if (!parent || parent.name.startsWith('batch')) continue;
    t.ok(s.startMs >= parent.startMs && s.endMs <= parent.endMs, `${s.name} within ${parent.name}`);
  }
});

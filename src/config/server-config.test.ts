import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadServerConfig, parseAddress } from './server-config.js';

/** A folder of the file's own, removed when it ends: left behind, a run's dozens pile up in /tmp. */
function folder(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function withFile(text: string): { dir: string; file: string } {
  const dir = folder('tsserve-config-');
  const file = join(dir, 'config.properties');
  writeFileSync(file, text);
  return { dir, file };
}

t.test("defaults are TorchServe's", async (t) => {
  const c = loadServerConfig({}, {}, folder('tsserve-empty-'));
  t.equal(c.inferenceAddress.raw, 'http://127.0.0.1:8080');
  t.equal(c.managementAddress.port, 8081);
  t.equal(c.metricsAddress.port, 8082);
  t.equal(c.jobQueueSize, 100);
  t.equal(c.maxRequestSize, 6553500);
  t.equal(c.defaultResponseTimeout, 120);
  t.equal(c.enableModelApi, false);
  t.equal(c.disableTokenAuthorization, false);
});

t.test('precedence: env (with enable_envvars_config) > CLI > file', async (t) => {
  const { dir, file } = withFile('model_store=/from/file\njob_queue_size=5\nenable_envvars_config=true\n');
  const c = loadServerConfig({ tsConfig: file, modelStore: '/from/cli' }, { TS_JOB_QUEUE_SIZE: '7', TS_TOKEN_EXPIRATION_TIME_MIN: '5' }, dir);
  t.equal(c.modelStore, '/from/cli');
  t.equal(c.jobQueueSize, 7);
  t.equal(c.tokenExpirationMin, 5);
  const off = withFile('job_queue_size=5\n');
  t.equal(loadServerConfig({ tsConfig: off.file }, { TS_JOB_QUEUE_SIZE: '7' }, off.dir).jobQueueSize, 5, 'env ignored without opt-in');
  // TorchServe's names, its constants' (review-17 F10: tsserve read TS_TS_HEADER_KEY_SEQUENCE_ID).
  const sequence = { TS_HEADER_KEY_SEQUENCE_ID: 'seq-a', TS_HEADER_KEY_SEQUENCE_START: 'seq-b', TS_HEADER_KEY_SEQUENCE_END: 'seq-c' };
  t.same(loadServerConfig({ tsConfig: file }, sequence, dir).sequenceHeaders, { id: 'seq-a', start: 'seq-b', end: 'seq-c' });
});

t.test('TS_CONFIG_FILE beats --ts-config; ./config.properties is read when neither is given', async (t) => {
  const a = withFile('job_queue_size=11\n');
  const b = withFile('job_queue_size=22\n');
  t.equal(loadServerConfig({ tsConfig: b.file }, { TS_CONFIG_FILE: a.file }, a.dir).jobQueueSize, 11);
  t.equal(loadServerConfig({}, {}, b.dir).jobQueueSize, 22);
  t.throws(() => loadServerConfig({ tsConfig: '/no/such/file' }, {}, a.dir), { message: /--ts-config file not found/ });
});

t.test('addresses', async (t) => {
  const ports = { http: 80, https: 443 };
  t.match(parseAddress('http://0.0.0.0:9090', ports), { scheme: 'http', host: '0.0.0.0', port: 9090 });
  t.match(parseAddress('https://[::1]', ports), { scheme: 'https', host: '::1', port: 443 });
  t.match(parseAddress('unix:/tmp/ts.sock', ports), { scheme: 'unix', path: '/tmp/ts.sock' });
  t.throws(() => parseAddress('ftp://x', ports), /Invalid binding address: ftp:\/\/x/);
  t.throws(() => parseAddress('http://x:70000', ports), /Invalid port number/);
});

t.test('blacklist_env_vars and allowed_urls are whole-string regexes; one that does not compile stops the start', async (t) => {
  const { dir, file } = withFile('blacklist_env_vars=AWS_.*|SECRET\n');
  const c = loadServerConfig({ tsConfig: file }, {}, dir);
  t.ok(c.blacklistEnvVars?.test('AWS_SECRET_ACCESS_KEY'));
  t.notOk(c.blacklistEnvVars?.test('MY_SECRET'), 'the whole name must match');
  t.equal(loadServerConfig({}, {}, folder('tsserve-empty-')).blacklistEnvVars, undefined, 'none by default');
  const bad = withFile('blacklist_env_vars=(unclosed\n');
  t.throws(() => loadServerConfig({ tsConfig: bad.file }, {}, bad.dir), {
    name: 'Error',
    message: /^Invalid configuration:\n {2}blacklist_env_vars=\(unclosed is not allowed: blacklist_env_vars is a regular expression$/,
  });
  const badUrls = withFile('allowed_urls=file://[\n');
  t.throws(() => loadServerConfig({ tsConfig: badUrls.file }, {}, badUrls.dir), { message: /^allowed_urls: Invalid regular expression/ });
});

/** The message loading `text` as config.properties fails with (tap's `throws` matches a message's part only). */
function refusal(text: string): string {
  const file = withFile(text);
  try {
    loadServerConfig({ tsConfig: file.file }, {}, file.dir);
  } catch (err) {
    return (err as Error).message;
  }
  return 'loaded';
}

t.test('otel_traces off and traceresponse by default; otel_trace_header must be a header name, or none', async (t) => {
  const c = loadServerConfig({}, {}, folder('tsserve-empty-'));
  t.equal(c.otelTraces, false);
  t.equal(c.otelTraceHeader, 'traceresponse');
  const other = withFile('otel_traces=true\notel_trace_header=X-Trace-Id\n');
  t.match(loadServerConfig({ tsConfig: other.file }, {}, other.dir), { otelTraces: true, otelTraceHeader: 'x-trace-id' });
  const none = withFile('otel_trace_header=none\n');
  t.equal(loadServerConfig({ tsConfig: none.file }, {}, none.dir).otelTraceHeader, '');
  // tr!ce is an HTTP header's name, but no gRPC metadata key: every traced gRPC prediction failed (review-17 F1).
  for (const name of ['trace id', 'tr!ce']) {
    t.equal(refusal(`otel_trace_header=${name}\n`), `Invalid configuration: otel_trace_header is not a header name (letters, digits, _ . -): ${name}`);
  }
});

t.test('the sequence headers: header names, three different ones, none that tsserve writes or no answer may carry', async (t) => {
  const other = withFile('ts_header_key_sequence_id=X-Seq\n');
  t.equal(loadServerConfig({ tsConfig: other.file }, {}, other.dir).sequenceHeaders.id, 'x-seq');
  // Before, a name no answer could carry failed each answer of a stateful model with Fastify's own 500.
  t.equal(
    refusal('ts_header_key_sequence_end=seq end\n'),
    'Invalid configuration: ts_header_key_sequence_end is not a header name (letters, digits, _ . -): seq end',
  );
  // te, upgrade, proxy-connection, http2-settings in a failed gRPC call's trailers took the server down (review-17 F1).
  // url_path: the front end sets it on every request, naming the sequence '' (review-18 F5).
  for (const name of ['Content-Type', 'te', 'Upgrade', 'proxy-connection', 'http2-settings', 'trailer', 'expires', 'pragma', 'x-bin', 'url_path', 'explain']) {
    t.equal(
      refusal(`ts_header_key_sequence_id=${name}\n`),
      `Invalid configuration: ts_header_key_sequence_id=${name} names a header tsserve writes itself or no answer may carry; name another (ts_request_sequence_id, the default)`,
    );
  }
  // Before, the handler's getSequenceId read the start header's "true" (review-17 F9).
  t.equal(
    refusal('ts_header_key_sequence_start=TS_request_sequence_id\n'),
    'Invalid configuration: ts_header_key_sequence_id, ts_header_key_sequence_start, ts_header_key_sequence_end, otel_trace_header must name different headers: ts_request_sequence_id, ts_request_sequence_id, ts_request_sequence_end, traceresponse',
  );
  // Before, the answer's sequence id replaced the trace header of the same name (review-18 F5).
  t.equal(
    refusal('otel_trace_header=ts_request_sequence_end\n'),
    'Invalid configuration: ts_header_key_sequence_id, ts_header_key_sequence_start, ts_header_key_sequence_end, otel_trace_header must name different headers: ts_request_sequence_id, ts_request_sequence_start, ts_request_sequence_end, ts_request_sequence_end',
  );
  t.equal(
    loadServerConfig({ tsConfig: withFile('otel_trace_header=none\nts_header_key_sequence_id=traceresponse\n').file }, {}, '/').sequenceHeaders.id,
    'traceresponse',
    'no trace header, no clash',
  );
});

t.test("otel_trace_header may not name a header tsserve writes itself: it would replace TorchServe's request id, the content type...", async (t) => {
  for (const header of ['X-Request-Id', 'content-type', 'Content-Length', 'retry-after', 'grpc-status', 'te']) {
    t.equal(
      refusal(`otel_trace_header=${header}\n`),
      `Invalid configuration: otel_trace_header=${header} names a header tsserve writes itself or no answer may carry; name another (traceresponse, the default, or none)`,
    );
  }
});

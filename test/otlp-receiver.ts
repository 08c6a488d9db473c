/**
 * An OTLP/HTTP trace receiver for the tests: a node:http server on 127.0.0.1 that takes what the
 * exporter POSTs to /v1/traces (ExportTraceServiceRequest, protobuf) and decodes the fields the
 * tests read (otlp-traces.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Test } from 'tap';
import { buildMar, FIXTURES, startTestServer, waitReady, type TestServer } from './helpers.js';
import { decodeTraces, type ReceivedSpan } from './otlp-traces.js';

export { decodeTraces, type ReceivedSpan };

export interface OtlpReceiver {
  /** The endpoint for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT. */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** The content types the exporter sent. */
  readonly contentTypes: Set<string>;
}

/** Starts a receiver; it is closed when the test ends. */
export async function otlpReceiver(t: Test): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes = new Set<string>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      contentTypes.add(String(req.headers['content-type']));
      if (req.url === '/v1/traces') spans.push(...decodeTraces(Buffer.concat(chunks)));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1/traces`, spans, contentTypes };
}

/** A server (in this process) exporting its traces to `url` every 100 ms, with the echo model loaded and ready. */
export async function tracedEchoServer(t: Test, url: string): Promise<TestServer> {
  const env = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: url, OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_SERVICE_NAME: 'tsserve-under-test' };
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') }),
    properties: { otel_traces: 'true', load_models: 'echo.mar' },
  }).finally(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  await waitReady(server.urls.management, 'echo');
  return server;
}

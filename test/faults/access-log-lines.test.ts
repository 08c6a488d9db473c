// The access log is one line per answered request, in the order the answers went out, and a client
// cannot forge its fields: a quote, a backslash or a control character it puts in its request
// line is written escaped, as nginx writes it (\x22), so each line has exactly its two quotes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { register, serve } from '../echo-model.js';
import { grpcClient } from '../grpc-client.js';
import { type TestServer, waitFor, waitReady } from '../helpers.js';
import { exchange, STATUS_LINE } from './raw-request.js';
import { survived } from './survival.js';

const accessLines = (server: TestServer): string[] => {
  try {
    return readFileSync(join(server.dir, 'logs', 'access_log.log'), 'latin1')
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
};

t.test("a client's quotes and control characters are escaped in its access line", async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const cases: Array<[string, string]> = [
    ['a request line the parser refuses, with quotes and a forged status', 'GET /ping?q=" 200 1 trace_id=forged HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a control character (ESC) in the request line', 'GET /ping?q=\x1b[31mred HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a quote in a path the router takes', 'GET /models/a"b HTTP/1.1\r\nHost: x\r\n\r\n'],
  ];
  const ports: Array<[string, number]> = [];
  for (const [what, raw] of cases) {
    const url = raw.includes('/models/') ? server.urls.management : server.urls.inference;
    const { text, port } = await exchange(url, raw, 1);
    t.match(text, /^HTTP\/1\.1 \d{3} /, `${what}: answered`);
    ports.push([what, port]);
  }
  await waitFor(() => ports.every(([, p]) => accessLines(server).some((l) => l.includes(`:${p} `))), 5000, 'the lines').catch(() => undefined);
  for (const [what, port] of ports) {
    const line = accessLines(server).find((l) => l.includes(`:${port} `)) ?? '';
    t.equal(line.split('"').length - 1, 2, `${what}: two quotes, the request line's own: ${line}`);
    t.notOk(/[^\x20-\x7e]/.test(line), `${what}: printable ASCII only`);
    t.match(line, /" \d{3} \d+$/, `${what}: ends in its status and time`);
  }
  t.match(accessLines(server).join('\n'), /\\x22 200 1 trace_id=forged/, 'a quote is written \\x22');
  t.match(accessLines(server).join('\n'), /\\x1B\[31mred/, 'ESC is written \\x1B');
  await survived(t, server, { models: ['echo'] });
});

t.test('pipelined requests: their lines in the order of their answers', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  await register(t, server, 'idle', { initial_workers: 0 });
  // The first is answered after 300 ms; the refusal and the ping behind it are ready at once, but
  // HTTP/1.1 answers in order.
  const requests = [
    'POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nsleep:300',
    'POST /predictions/idle HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx',
    'GET /ping HTTP/1.1\r\nHost: x\r\n\r\n',
  ];
  const { text, port } = await exchange(server.urls.inference, requests.join(''), 3);
  t.same(text.match(STATUS_LINE), ['HTTP/1.1 200 ', 'HTTP/1.1 503 ', 'HTTP/1.1 200 '], 'answered in order');
  await waitFor(() => accessLines(server).filter((l) => l.includes(`:${port} `)).length === 3, 5000, 'three lines').catch(() => undefined);
  const logged = accessLines(server)
    .filter((l) => l.includes(`:${port} `))
    .map((l) => /"(\S+ \S+) HTTP\/1\.1" (\d{3})/.exec(l)?.slice(1, 3).join(' '));
  t.same(logged, ['POST /predictions/echo 200', 'POST /predictions/idle 503', 'GET /ping 200'], 'one line each, in answer order');
  await survived(t, server, { models: ['echo', 'idle'], sent: 3, answered: (text.match(STATUS_LINE) ?? []).length });
});

t.test('a gRPC call or stream its client cancelled or let pass its deadline: its line says so, and its peer (review-18 F8, review-19 F1)', async (t) => {
  const server = await serve(t, { load_models: 'echo.mar' });
  await waitReady(server.urls.management, 'echo');
  const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService') as unknown as {
    Predictions(request: object, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null) => void): grpc.ClientUnaryCall;
  };
  const call = (options: grpc.CallOptions): Promise<number> =>
    new Promise((resolve) => {
      const running = client.Predictions({ model_name: 'echo', input: { body: Buffer.from('sleep:600') } }, new grpc.Metadata(), options, (err) =>
        resolve(err ? err.code : grpc.status.OK),
      );
      if (options.deadline === undefined) setTimeout(() => running.cancel(), 200);
    });
  t.equal(await call({ deadline: Date.now() + 200 }), grpc.status.DEADLINE_EXCEEDED);
  t.equal(await call({}), grpc.status.CANCELLED);
  const stream = (options: grpc.CallOptions): Promise<number> =>
    new Promise((resolve) => {
      const running = (client as unknown as { StreamPredictions2(o: grpc.CallOptions): grpc.ClientDuplexStream<object, object> }).StreamPredictions2(options);
      running.on('data', () => undefined);
      running.on('error', (err: grpc.ServiceError) => resolve(err.code));
      running.on('end', () => resolve(grpc.status.OK));
      running.write({ model_name: 'echo', input: { body: Buffer.from('sleep:600'), ts_request_sequence_start: Buffer.from('true') } });
      if (options.deadline === undefined) setTimeout(() => running.cancel(), 200);
    });
  t.equal(await stream({ deadline: Date.now() + 200 }), grpc.status.DEADLINE_EXCEEDED);
  t.equal(await stream({}), grpc.status.CANCELLED);
  const lines = (method: string): string[] =>
    accessLines(server).filter((l) => l.includes(`"gRPC org.pytorch.serve.grpc.inference.InferenceAPIsService/${method} `));
  await waitFor(() => lines('Predictions').length === 2 && lines('StreamPredictions2').length === 2, 5000, 'the four lines');
  // Before, the calls said 0 (OK), from peer "unknown", though their clients saw neither; the streams said nothing.
  for (const method of ['Predictions', 'StreamPredictions2']) {
    t.match(lines(method)[0], / 127\.0\.0\.1:\d+ "gRPC \S+ HTTP\/2\.0" 4 \d+$/, `${method}: the deadline, DEADLINE_EXCEEDED (4), and the peer`);
    t.match(lines(method)[1], / 127\.0\.0\.1:\d+ "gRPC \S+ HTTP\/2\.0" 1 \d+$/, `${method}: the cancelled call, CANCELLED (1)`);
  }
  await survived(t, server, { models: ['echo'], sent: 4, answered: 4 });
});

// What a handler answers is untrusted until it reaches the wire: a status no HTTP response can
// carry, a reason phrase or a header with a line break, a header name that is no token. Each
// such answer is a 500 that says what the handler did wrong, in the one-body and the streaming
// path alike; the server stays up and the next good answer goes out as the handler set it.
// Framing headers (content-length, transfer-encoding, connection) are the server's: a handler's
// are dropped, and the body still arrives whole.
import { join } from 'node:path';
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { grpcClient, type UnaryAnswer, unaryCall } from '../grpc-client.js';
import { buildMar, errorBody, FIXTURES, startTestServer, waitFor, waitReady, type TestServer } from '../helpers.js';
import { survived } from './survival.js';

interface Ask {
  status?: unknown;
  phrase?: unknown;
  headers?: Record<string, unknown>;
  parts?: number;
  fail?: unknown;
  message?: string;
  send?: unknown;
}

const BAD: ReadonlyArray<{ what: string; ask: Ask; says: RegExp }> = [
  { what: 'status 999', ask: { status: 999 }, says: /status 999/ },
  { what: 'status 99', ask: { status: 99 }, says: /status 99\b/ },
  { what: 'status 0', ask: { status: 0 }, says: /status 0\b/ },
  { what: 'status 200.5', ask: { status: 200.5 }, says: /status 200\.5/ },
  { what: 'status "200" (text)', ask: { status: '200' }, says: /status "200"/ },
  { what: 'a phrase with CR/LF', ask: { status: 201, phrase: 'Made\r\nx-forged: yes' }, says: /reason phrase/ },
  { what: 'a header name with CR/LF', ask: { headers: { 'x-a\r\nx-forged': 'yes' } }, says: /header name/ },
  { what: 'a header name with a space', ask: { headers: { 'x bad': 'yes' } }, says: /header name/ },
  { what: 'a header value with CR/LF', ask: { headers: { 'x-a': 'yes\r\nx-forged: yes' } }, says: /header x-a/ },
  { what: 'a header value with NUL', ask: { headers: { 'x-a': 'a\u0000b' } }, says: /header x-a/ },
];

const FRAMINGS: ReadonlyArray<Record<string, string>> = [
  { 'content-length': '1' },
  { 'transfer-encoding': 'chunked' },
  { connection: 'close', 'keep-alive': 'timeout=1', upgrade: 'h2c' },
];

async function ask(server: TestServer, body: Ask): Promise<Response> {
  return fetch(`${server.urls.inference}/predictions/answer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
}

async function serveAnswerModel(t: Test): Promise<TestServer> {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'answer', version: '1.0', handler: join(FIXTURES, 'answer_handler.ts') }),
    properties: { load_models: 'answer.mar' },
  });
  await waitReady(server.urls.management, 'answer');
  return server;
}

t.test('a status, phrase or header no HTTP answer can carry: 500 with the reason, one body and streamed', async (t) => {
  const server = await serveAnswerModel(t);
  let sent = 0;
  let answered = 0;
  for (const parts of [0, 2]) {
    for (const bad of BAD) {
      const what = `${bad.what}${parts ? ', streamed' : ''}`;
      sent++;
      const res = await ask(server, { ...bad.ask, parts });
      answered++;
      t.equal(res.status, 500, `${what}: 500`);
      t.equal(res.headers.get('x-forged'), null, `${what}: no forged header`);
      const body = await errorBody(res);
      t.equal(body.type, 'InternalServerException', `${what}: type`);
      t.match(body.message, /^The handler's answer cannot be sent: /, `${what}: says the handler's answer is at fault`);
      t.match(body.message, bad.says, `${what}: says what is wrong (${body.message})`);
      sent++;
      const good = await ask(server, { status: 201, phrase: 'Made', headers: { 'x-handler': 'yes' }, parts });
      answered++;
      t.equal(good.status, 201, `${what}: the next good answer goes out`);
      t.equal(good.statusText, 'Made');
      t.equal(good.headers.get('x-handler'), 'yes');
      await good.arrayBuffer();
    }
  }
  await survived(t, server, { models: ['answer'], sent, answered });
});

t.test('over gRPC too: a status no HTTP answer can carry fails the call with the reason, and the next call succeeds', async (t) => {
  const server = await serveAnswerModel(t);
  const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  const call = (ask: Ask): Promise<UnaryAnswer> =>
    unaryCall(client, 'Predictions', { model_name: 'answer', input: { body: Buffer.from(JSON.stringify(ask)) } });
  for (const bad of BAD) {
    const answer = await call(bad.ask);
    t.equal(answer.code, grpc.status.INTERNAL, `${bad.what}: INTERNAL`);
    t.match(answer.details, /^The handler's answer cannot be sent: /, `${bad.what}: says why (${answer.details})`);
  }
  t.equal((await call({ status: 201 })).code, grpc.status.OK, 'the next call succeeds');
  await survived(t, server, { models: ['answer'] });
});

t.test("a handler's framing headers are dropped: the body arrives whole and the connection stays usable", async (t) => {
  const server = await serveAnswerModel(t);
  let sent = 0;
  let answered = 0;
  for (const parts of [0, 2]) {
    for (const headers of FRAMINGS) {
      const what = `${Object.keys(headers).join(', ')}${parts ? ', streamed' : ''}`;
      sent++;
      const res = await ask(server, { headers, parts });
      answered++;
      t.equal(res.status, 200, `${what}: 200`);
      const text = await res.text();
      t.ok(text.endsWith('}'), `${what}: the whole body arrived (${text.length} bytes)`);
      for (const name of Object.keys(headers)) {
        if (name !== 'transfer-encoding') t.not(res.headers.get(name), headers[name], `${what}: the handler's ${name} is not sent`);
      }
    }
  }
  await survived(t, server, { models: ['answer'], sent, answered });
});

t.test("a PredictionError whose status no HTTP answer can carry: the error's own 500, and the server stays up", async (t) => {
  const server = await serveAnswerModel(t);
  let answered = 0;
  const fails = [999, 99, 600, 0, 200, null, 'abc', -1];
  for (const fail of fails) {
    const res = await ask(server, { fail });
    answered++;
    t.equal(res.status, 500, `PredictionError status ${String(fail)}: 500`);
    t.same(await errorBody(res), { code: 500, type: 'InternalServerException', message: 'the handler failed' }, `status ${String(fail)}: TorchServe's body`);
  }
  const teapot = await ask(server, { fail: 418 });
  t.equal(teapot.status, 418, 'a 4xx the handler chose still goes out');
  await teapot.arrayBuffer();
  await survived(t, server, { models: ['answer'], sent: fails.length, answered });
});

t.test(
  "over gRPC, a handler's message with a lone surrogate, or one cut between a pair, fails its call with a status; the server stays up (review-16 F1)",
  async (t) => {
    // grpc-js percent-encodes a status's details with encodeURI, which throws on a lone surrogate:
    // thrown outside any handler of ours, it took the server down and left the call unanswered.
    const server = await serveAnswerModel(t);
    const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
    const call = (ask: Ask): Promise<UnaryAnswer> =>
      unaryCall(client, 'Predictions', { model_name: 'answer', input: { body: Buffer.from(JSON.stringify(ask)) } });
    const lone = await call({ fail: 400, message: 'bad input \ud800 here' });
    t.same([lone.code, lone.details], [grpc.status.INVALID_ARGUMENT, 'bad input \ufffd here'], 'the lone surrogate sent as U+FFFD');
    const cut = await call({ fail: 400, message: `${'x'.repeat(2047)}\u{1f600} and more` });
    t.equal(cut.code, grpc.status.INVALID_ARGUMENT, 'a message cut at 2048 characters between a pair: its status');
    t.ok(cut.details?.startsWith(`${'x'.repeat(2047)}\ufffd`), 'the half pair sent as U+FFFD');
    t.equal((await call({ status: 201 })).code, grpc.status.OK, 'the next call succeeds');
    await survived(t, server, { models: ['answer'], sent: 3, answered: 3 });
  },
);

t.test('numbers where text is read (a header value, a phrase) go out as text', async (t) => {
  const server = await serveAnswerModel(t);
  const res = await ask(server, { status: 201, phrase: 7, headers: { 'Content-Type': 5, 'x-count': 3 } });
  t.equal(res.status, 201);
  t.equal(res.statusText, '7');
  t.equal(res.headers.get('x-count'), '3');
  await res.arrayBuffer();
  await survived(t, server, { models: ['answer'], sent: 1, answered: 1 });
});

t.test("a handler that writes a message of the wrong shape to its worker's channel: that worker is stopped, the front end serves on", async (t) => {
  const server = await serveAnswerModel(t);
  const sends = [
    null,
    { kind: 'reply' },
    { kind: 'load-failed' },
    { kind: 'batch-failed', batchId: -1 },
    { kind: 'reply', batchId: 1, items: [{}], metrics: [], workMs: 1 },
    'text',
  ];
  let answered = 0;
  for (const send of sends) {
    const res = await ask(server, { send });
    answered++;
    t.ok(res.status === 200 || res.status === 500, `${JSON.stringify(send)}: answered (${res.status})`);
    await res.arrayBuffer();
    // A stopped worker's replacement serves: until it is READY a request may get "Worker died.".
    await waitFor(async () => (await ask(server, {})).status === 200, 30_000, `a worker serves after ${JSON.stringify(send)}`);
    t.pass(`${JSON.stringify(send)}: a worker serves again`);
  }
  await survived(t, server, { models: ['answer'], sent: sends.length, answered });
});

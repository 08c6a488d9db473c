// max_request_size bounds the whole body, whatever its encoding: a multipart body of many parts,
// each under the limit, is refused with the plain body's 413 as soon as its total passes the
// limit, chunked or announced, and so are an url-encoded form, a KServe JSON body and a gRPC
// message. The front end's memory stays bounded while it refuses them.
import { request } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { serve } from '../echo-model.js';
import { grpcClient, unaryCall } from '../grpc-client.js';
import { survived } from './survival.js';
import { frontEndMemory } from './memory.js';

const LIMIT = 4 * 1024 * 1024;
const PART = 3 * 1024 * 1024;
const SLICE = Buffer.alloc(64 * 1024, 0x61);
const BOUNDARY = 'tsserve-request-size';

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly connection: string | undefined;
}

/** Sends `chunks` as the body (chunked unless `headers` has a Content-Length), stopping when the answer comes; status 0 if none came. */
function post(url: string, headers: Record<string, string | number>, chunks: Iterable<Buffer>): Promise<Answer> {
  return new Promise((resolve) => {
    let answered = false;
    const req = request(url, { method: 'POST', headers }, (res) => {
      answered = true;
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      const answer = (): void => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection });
      res.on('end', answer);
      res.on('error', answer);
    });
    req.on('error', () => {
      if (!answered) resolve({ status: 0, body: '', connection: undefined });
    });
    const source = chunks[Symbol.iterator]();
    const pump = (): void => {
      for (let next = source.next(); !answered && !req.destroyed; next = source.next()) {
        if (next.done) return void req.end();
        if (!req.write(next.value)) return void req.once('drain', pump);
      }
    };
    pump();
  });
}

/** A multipart body of `parts` file parts of PART bytes each, made 64 KiB at a time from one buffer. */
function* multipartBody(parts: number): Generator<Buffer> {
  for (let i = 0; i < parts; i++) {
    yield Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="p${i}"; filename="f${i}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    for (let sent = 0; sent < PART; sent += SLICE.length) yield SLICE;
    yield Buffer.from('\r\n');
  }
  yield Buffer.from(`--${BOUNDARY}--\r\n`);
}

function byteLength(chunks: Iterable<Buffer>): number {
  let n = 0;
  for (const c of chunks) n += c.length;
  return n;
}

/** `total` bytes of one repeated slice: a form field's value, or the inside of a JSON string. */
function* repeated(head: string, total: number, tail: string): Generator<Buffer> {
  yield Buffer.from(head);
  for (let sent = 0; sent < total; sent += SLICE.length) yield SLICE;
  yield Buffer.from(tail);
}

const MULTIPART = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
const TOO_LARGE = { code: 413, type: 'RequestEntityTooLargeException', message: `Request body is larger than max_request_size (${LIMIT} bytes).` };

t.test('a body over max_request_size in total is a 413, whatever its encoding, and the front end holds none of it', async (t) => {
  const server = await serve(t, { max_request_size: String(LIMIT), load_models: 'echo.mar' });
  const predictions = `${server.urls.inference}/predictions/echo`;
  let sent = 0;
  let answered = 0;
  const send = async (url: string, headers: Record<string, string | number>, chunks: Iterable<Buffer>): Promise<Answer> => {
    sent++;
    const answer = await post(url, headers, chunks);
    if (answer.status !== 0) answered++;
    return answer;
  };

  // Warm the paths up (the parser, the worker's IPC) before the baseline.
  t.equal((await send(predictions, MULTIPART, multipartBody(1))).status, 200, 'one part under the limit is served');
  const memory = frontEndMemory();

  const cases: Array<[string, string, Record<string, string | number>, () => Iterable<Buffer>]> = [
    ['60 parts of 3 MB, chunked (180 MB)', predictions, MULTIPART, () => multipartBody(60)],
    ['60 parts of 3 MB, announced', predictions, { ...MULTIPART, 'content-length': byteLength(multipartBody(60)) }, () => multipartBody(60)],
    ['an url-encoded form, chunked', predictions, { 'content-type': 'application/x-www-form-urlencoded' }, () => repeated('data=', 8 * LIMIT, '')],
    ['a raw body, chunked', predictions, { 'content-type': 'application/octet-stream' }, () => repeated('', 8 * LIMIT, '')],
    [
      'a KServe v2 JSON body, chunked',
      `${server.urls.inference}/v2/models/echo/infer`,
      { 'content-type': 'application/json' },
      () => repeated('{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["', 8 * LIMIT, '"]}]}'),
    ],
  ];
  for (const [what, url, headers, body] of cases) {
    const answer = await send(url, headers, body());
    t.equal(answer.status, 413, `${what}: 413`);
    if (answer.status === 413) t.same(JSON.parse(answer.body), TOO_LARGE, `${what}: the plain body's TorchServe error`);
    t.equal(answer.connection, 'close', `${what}: the connection, with the rest of the body on it, is closed`);
    t.equal((await send(predictions, MULTIPART, multipartBody(1))).status, 200, `${what}: a body under the limit is served after it`);
  }

  const grpcInference = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  const overGrpc = await unaryCall(grpcInference, 'Predictions', { model_name: 'echo', input: { body: Buffer.alloc(LIMIT + 1) } });
  t.equal(overGrpc.code, grpc.status.RESOURCE_EXHAUSTED, `a gRPC message over max_request_size: ${overGrpc.details}`);

  memory.check(t);
  await survived(t, server, { models: ['echo'], sent, answered });
});

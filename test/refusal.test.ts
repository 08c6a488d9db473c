// A prediction refused before the router (http/raw-refusal.ts) is the refusal the routes write: the
// same status, headers and body as a route's own 503 on a real socket, counted and logged the
// same, behind token authorization as before; what it does not refuse reaches the routes.
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { register, serve } from './echo-model.js';
import { metric, waitFor, type TestServer } from './helpers.js';

interface RawAnswer {
  readonly status: string;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Sends `path` a POST of `body` on a new connection and reads the answer (its Content-Length); at most 10 s. */
function rawPost(origin: string, path: string, body: string, extraHeaders = ''): Promise<RawAnswer> {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${path} in 10 s`)), 10_000);
    let bytes = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      const end = bytes.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [status = '', ...lines] = bytes.toString('latin1', 0, end).split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      if (bytes.length < end + 4 + Number(headers['content-length'])) return;
      clearTimeout(timer);
      socket.destroy();
      resolve({ status, headers, body: bytes.toString('utf8', end + 4) });
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(`POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extraHeaders}\r\n${body}`);
  });
}

/** The answer's headers but those that differ between any two answers. */
function steadyHeaders(answer: RawAnswer): Record<string, string> {
  const { 'x-request-id': id, date, ...rest } = answer.headers;
  return id && date ? rest : answer.headers;
}

const accessLog = (server: TestServer): string => readFileSync(join(server.dir, 'logs', 'access_log.log'), 'utf8');

t.test("a model that refuses: the refusal before the router is the route's own, counted and logged", async (t) => {
  const server = await serve(t, { cors_allowed_origin: 'https://example.com' });
  await register(t, server, 'idle', { initial_workers: 0 });
  // SageMaker's route refuses in the router's hook: the refusal every route wrote before.
  const routed = await rawPost(server.urls.inference, '/models/idle/invoke', 'x');
  t.equal(routed.status, 'HTTP/1.1 503 Service Unavailable');
  const ids = new Set<string | undefined>();
  for (const path of ['/predictions/idle', '/predictions/idle/', '/explanations/idle?x=1']) {
    const early = await rawPost(server.urls.inference, path, 'x');
    ids.add(early.headers['x-request-id']);
    t.equal(early.status, routed.status, path);
    t.same(steadyHeaders(early), steadyHeaders(routed), `${path}: the same headers, CORS and Retry-After included`);
    t.match(early.headers['x-request-id'], /^[0-9a-f-]{36}$/, `${path}: a request id of its own`);
    t.not(early.headers['x-request-id'], routed.headers['x-request-id']);
    t.equal(early.body, routed.body, `${path}: the same body`);
  }
  // The refusal's headers are made once and its id written into them for each answer.
  t.equal(ids.size, 3, 'each refusal its own request id');
  const versioned = await rawPost(server.urls.inference, '/predictions/idle/1.0', 'x');
  t.match(JSON.parse(versioned.body), { code: 503, type: 'ServiceUnavailableException', message: /^Model "idle" Version 1.0" has no worker/ });

  const metrics = await (await fetch(`${server.urls.metrics}/metrics`)).text();
  t.equal(await metric(server, 'ts_requests_rejected_total', 'idle'), 5, 'each refusal counted');
  t.match(metrics, /^ts_inference_requests_total\{model_name="idle",model_version="default",[^\n]*\} 4\.0$/m, 'and each request, by the version asked for');
  t.match(metrics, /^ts_inference_requests_total\{model_name="idle",model_version="1\.0",[^\n]*\} 1\.0$/m);
  t.match(metrics, /^Requests5XX\{[^\n]*\} 5\.0$/m, 'and each 5XX response');
  await waitFor(
    () =>
      accessLog(server)
        .split('\n')
        .filter((l) => / 503 \d+$/.test(l)).length === 5,
    5000,
    'five access-log lines',
  );
  t.match(accessLog(server), /\/127\.0\.0\.1:\d+ "POST \/predictions\/idle\/1\.0 HTTP\/1\.1" 503 \d+\n/, "in the route's format");
});

t.test('refusals one after another on one connection: each its own access-log line, by its own request line', async (t) => {
  const server = await serve(t);
  await register(t, server, 'idle', { initial_workers: 0 });
  const paths = ['/predictions/idle', '/predictions/idle', '/predictions/idle/1.0', '/explanations/idle', '/predictions/idle'];
  const lines = await new Promise<string[]>((resolve, reject) => {
    const { hostname, port } = new URL(server.urls.inference);
    const socket = connect({ host: hostname, port: Number(port) });
    const timer = setTimeout(() => socket.destroy(new Error('no five answers in 10 s')), 10_000);
    let answers = '';
    socket.on('data', (chunk: Buffer) => {
      answers += chunk.toString('latin1');
      if ((answers.match(/^HTTP\/1\.1 503 /gm) ?? []).length < paths.length) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(paths);
    });
    socket.on('error', reject);
    // One after another on the same keep-alive connection, as a load generator sends them.
    socket.write(paths.map((p) => `POST ${p} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Length: 1\r\n\r\nx`).join(''));
  });
  await waitFor(
    () =>
      accessLog(server)
        .split('\n')
        .filter((l) => / 503 \d+$/.test(l)).length === lines.length,
    5000,
    'five access-log lines',
  );
  const logged = accessLog(server)
    .split('\n')
    .filter((l) => / 503 \d+$/.test(l))
    .map((l) => /"POST (\S+) HTTP\/1\.1" 503 \d+$/.exec(l)?.[1]);
  t.same(logged, paths, 'each line names its own request');
  const ports = new Set(
    accessLog(server)
      .split('\n')
      .filter((l) => / 503 \d+$/.test(l))
      .map((l) => /:(\d+) "/.exec(l)?.[1]),
  );
  t.equal(ports.size, 1, 'all from the one connection');
});

t.test('what the refusal before the router leaves alone reaches the routes', async (t) => {
  const server = await serve(t);
  await register(t, server, 'idle', { initial_workers: 0 });
  await register(t, server, 'serving', { initial_workers: 1 });
  const answered = await rawPost(server.urls.inference, '/predictions/serving', 'hello');
  t.equal(answered.status, 'HTTP/1.1 200 OK', 'a model that takes the job');
  const missing = await rawPost(server.urls.inference, '/predictions/nosuch', 'x');
  t.match(JSON.parse(missing.body), { code: 404, type: 'ModelNotFoundException' }, 'an unknown model');
  const options = await fetch(`${server.urls.inference}/predictions/idle`, { method: 'OPTIONS' });
  t.equal(options.status, 200, 'OPTIONS describes the model');
  const tail = await rawPost(server.urls.inference, '/predictions/idle/1.0/extra/path', 'x');
  t.match(JSON.parse(tail.body), { code: 503, message: /^Model "idle" Version 1.0" has no worker/ }, "a path with a tail is the router's, which refuses it");
});

t.test('token authorization: a refusal only for a request whose key passes', async (t) => {
  const server = await serve(t, { disable_token_authorization: 'false' });
  const keys = JSON.parse(readFileSync(join(server.dir, 'key_file.json'), 'utf8')) as { management: { key: string }; inference: { key: string } };
  const query = new URLSearchParams({ url: 'echo.mar', model_name: 'idle', initial_workers: '0', synchronous: 'true' });
  const registered = await fetch(`${server.urls.management}/models?${query}`, { method: 'POST', headers: { authorization: `Bearer ${keys.management.key}` } });
  t.equal(registered.status, 200);
  const keyless = await rawPost(server.urls.inference, '/predictions/idle', 'x');
  t.match(JSON.parse(keyless.body), { code: 400, type: 'InvalidKeyException' }, 'no key: 400, not a refusal');
  const wrong = await rawPost(server.urls.inference, '/predictions/idle', 'x', `Authorization: Bearer ${keys.management.key}\r\n`);
  t.match(JSON.parse(wrong.body), { code: 400, type: 'InvalidKeyException' }, 'the management key: 400');
  const keyed = await rawPost(server.urls.inference, '/predictions/idle', 'x', `Authorization: Bearer ${keys.inference.key}\r\n`);
  t.match(JSON.parse(keyed.body), { code: 503, type: 'ServiceUnavailableException' }, 'the inference key: the refusal');
});

/** A POST over TLS (the server's certificate self-signed): its status, headers and body. */
function httpsPost(url: string): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: 'POST', rejectUnauthorized: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const { 'x-request-id': _id, date: _date, ...headers } = res.headers as Record<string, string>;
        resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in 10 s`)));
    req.on('error', reject);
    req.end('x');
  });
}

t.test("over https the refusal before the router is the route's own too", async (t) => {
  const server = await serve(t, { inference_address: 'https://127.0.0.1:0' });
  await register(t, server, 'idle', { initial_workers: 0 });
  const routed = await httpsPost(`${server.urls.inference}/models/idle/invoke`);
  const early = await httpsPost(`${server.urls.inference}/predictions/idle`);
  t.equal(routed.status, 503);
  t.same(early, routed, 'the same status, headers and body');
  t.equal(await metric(server, 'ts_requests_rejected_total', 'idle'), 2);
});

/** Sends `path` the head of a POST whose body says it is `declared` bytes, then a little of it; the answer's status line and headers, and the bytes sent in all. */
function oversizedPost(origin: string, path: string, declared: number): Promise<{ status: string; headers: string; sent: number }> {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${path} in 10 s`)), 10_000);
    let answer = '';
    let sent = 0;
    const chunk = Buffer.alloc(64 * 1024);
    // A client that keeps sending until it is answered, up to 8 MB.
    const send = (): void => {
      while (answer === '' && sent < 8 * 1024 * 1024 && socket.write(chunk)) sent += chunk.length;
    };
    socket.on('drain', send);
    socket.on('data', (data: Buffer) => {
      answer += data.toString('latin1');
      const end = answer.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      socket.destroy();
      const [status = '', ...lines] = answer.slice(0, end).split('\r\n');
      resolve({ status, headers: lines.join('\n').toLowerCase(), sent });
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      if (answer === '') reject(err);
    });
    socket.write(`POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Length: ${declared}\r\n\r\n`);
    send();
  });
}

t.test('a body declared over max_request_size gets the 413 from a refusing model too, not a 503 that reads it all', async (t) => {
  const server = await serve(t, { max_request_size: String(1024 * 1024) });
  await register(t, server, 'idle', { initial_workers: 0 });
  for (const path of ['/predictions/idle', '/models/idle/invoke']) {
    const answer = await oversizedPost(server.urls.inference, path, 100_000_000);
    t.equal(answer.status, 'HTTP/1.1 413 Payload Too Large', `${path}: the body limit's answer`);
    t.match(answer.headers, /^connection: close$/m, `${path}: and the connection ends, the body unread`);
  }
  t.equal(await metric(server, 'ts_requests_rejected_total', 'idle'), 0, 'not counted as refusals');
});

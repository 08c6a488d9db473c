// What the front end answers before any worker is asked, in process: TorchServe's headers on every
// answer, Gson-style JSON, and each refusal of a request as its {code, type, message}: an unknown
// model, version or path, a multipart body it cannot read, a body over max_request_size. Bytes a
// client sends on a raw socket (a bad request line, headers over the limit) are
// test/protocol-errors.test.ts's; what a handler answers, test/inference.test.ts's.
import t from 'tap';
import { errorOf, inProcessServer } from './in-process.js';

t.test('/ping answers Healthy in Gson style with TorchServe headers', async (t) => {
  const server = await inProcessServer(t);
  const res = await server.inference({ method: 'GET', url: '/ping' });
  t.equal(res.statusCode, 200);
  t.equal(res.body, '{\n  "status": "Healthy"\n}\n');
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  t.equal(res.headers['cache-control'], 'no-cache; no-store, must-revalidate, private');
  t.equal(res.headers.pragma, 'no-cache');
  t.equal(res.headers.expires, 'Thu, 01 Jan 1970 00:00:00 UTC');
});

t.test('cors_allowed_origin, _methods and _headers are sent on every answer', async (t) => {
  const server = await inProcessServer(t, {
    properties: { cors_allowed_origin: 'https://example.test', cors_allowed_methods: 'GET, POST', cors_allowed_headers: 'X-Custom' },
  });
  for (const res of [await server.inference({ method: 'GET', url: '/ping' }), await server.management({ method: 'GET', url: '/models/nope' })]) {
    t.match(res.headers, {
      'access-control-allow-origin': 'https://example.test',
      'access-control-allow-methods': 'GET, POST',
      'access-control-allow-headers': 'X-Custom',
    });
  }
  const plain = await inProcessServer(t);
  t.equal((await plain.inference({ method: 'GET', url: '/ping' })).headers['access-control-allow-origin'], undefined, 'none unless configured');
});

t.test('a request the front end refuses gets JSON with the right status and type', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'], properties: { load_models: 'echo.mar', max_request_size: '100000' } });
  const cases: Array<{
    what: string;
    url: string;
    payload?: string | Buffer;
    headers?: Record<string, string>;
    status: number;
    type: string;
    message: RegExp | string;
  }> = [
    { what: 'unknown model', url: '/predictions/nope', payload: 'x', status: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' },
    {
      what: 'unknown version',
      url: '/predictions/echo/9.9',
      payload: 'x',
      status: 404,
      type: 'ModelVersionNotFoundException',
      message: 'Model version: 9.9 does not exist for model: echo',
    },
    {
      what: 'multipart without a boundary',
      url: '/predictions/echo',
      payload: 'data',
      headers: { 'content-type': 'multipart/form-data' },
      status: 400,
      type: 'BadRequestException',
      message: /^Invalid multipart body: /,
    },
    {
      what: 'multipart cut short',
      url: '/predictions/echo',
      payload: '--x\r\nContent-Disposition: form-data; name="data"\r\n\r\nabc',
      headers: { 'content-type': 'multipart/form-data; boundary=x' },
      status: 400,
      type: 'BadRequestException',
      message: /^Invalid multipart body: /,
    },
    {
      what: 'oversized body',
      url: '/predictions/echo',
      payload: Buffer.alloc(200_000),
      status: 413,
      type: 'RequestEntityTooLargeException',
      message: /^Request body is larger than max_request_size \(\d+ bytes\)\.$/,
    },
    {
      what: 'unknown path',
      url: '/nothing/here',
      status: 404,
      type: 'ResourceNotFoundException',
      message: 'Requested resource is not found, please refer to API document.',
    },
  ];
  for (const c of cases) {
    const res = await server.inference({ method: c.payload === undefined ? 'GET' : 'POST', url: c.url, payload: c.payload, headers: c.headers });
    t.equal(res.statusCode, c.status, `${c.what}: status`);
    t.match(res.headers['content-type'], /^application\/json/, `${c.what}: JSON`);
    const body = errorOf(res);
    t.equal(body.code, c.status, `${c.what}: code`);
    t.equal(body.type, c.type, `${c.what}: type`);
    t.match(body.message, c.message, `${c.what}: message`);
  }
  t.equal((await server.inference({ method: 'POST', url: '/predictions/echo', payload: 'x' })).statusCode, 200, 'still serving after all of that');
});

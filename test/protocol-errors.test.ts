// What fails before a route runs, or on the way in, still answers TorchServe's error JSON
// ({code, type, message}) and leaves the server up: an undecodable request line, headers over
// the limit, a path segment over the limit, a bad %-escape, a JSON body nested 100,000 deep.
// The bytes are sent on a raw socket, so nothing between the test and the server tidies them.
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { buildMnistMar, errorBody, MNIST_DIR, startTestServer, waitReady } from './helpers.js';

/** Sends raw bytes, answers the status and the JSON body of the response. */
function rawRequest(base: string, bytes: string): Promise<{ status: number; body: unknown }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(bytes));
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', body = ''] = text.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), body: body ? JSON.parse(body) : undefined });
    });
  });
}

const deep = (open: string, middle: string, close: string): string => open.repeat(100_000) + middle + close.repeat(100_000);

t.test('protocol-level refusals answer TorchServe-shaped JSON', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar' } });
  const base = server.urls.inference;
  t.same(
    await rawRequest(base, 'GET /pi\x01ng HTTP/1.1\r\nHost: x\r\n\r\n'),
    { status: 400, body: { code: 400, type: 'BadRequestException', message: 'Malformed HTTP request: Parse Error: Invalid char in url path' } },
    'an undecodable request line',
  );
  t.same(
    await rawRequest(base, `GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`),
    { status: 431, body: { code: 431, type: 'BadRequestException', message: 'Request header fields are too large' } },
    'headers over the limit',
  );
  t.same(
    await rawRequest(base, `GET /predictions/${'a'.repeat(2000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    { status: 414, body: { code: 414, type: 'BadRequestException', message: 'A path segment is longer than 1000 characters' } },
    'a very long model name',
  );
  t.same(
    await rawRequest(server.urls.management, 'GET /models/%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    { status: 400, body: { code: 400, type: 'BadRequestException', message: "'/models/%E0%A4%A' is not a valid url component" } },
    'a bad %-escape',
  );
  t.equal((await fetch(`${base}/ping`)).status, 200, 'the server is up');
});

t.test('a JSON body nested 100,000 deep is a 400, on the management API and on a prediction', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar' } });
  await waitReady(server.urls.management, 'mnist');
  const json = { 'content-type': 'application/json' };
  const register = await fetch(`${server.urls.management}/models`, { method: 'POST', headers: json, body: `{"url": ${deep('[', '1', ']')}}` });
  t.same(await errorBody(register), { code: 400, type: 'BadRequestException', message: 'Parameter url must be a string, a number or a boolean.' });
  const predicted = await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', headers: json, body: deep('[', '0', ']') });
  t.same(await errorBody(predicted), {
    code: 400,
    type: 'BadRequestException',
    message: 'Expected an image, or a 1x28x28 tensor as a nested list of numbers (got 1 values)',
  });
  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  t.equal(await (await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'PUT', body: seven })).text(), '7', 'and the model still answers');
});

t.test("Authorization: Bearer with two spaces before the key is accepted, as the contract's pattern says", async (t) => {
  const server = await startTestServer(t, { properties: { disable_token_authorization: 'false' } });
  const keys = JSON.parse(readFileSync(server.config.keyFile, 'utf8')) as { management: { key: string } };
  const res = await fetch(`${server.urls.management}/models`, { headers: { authorization: `Bearer  ${keys.management.key}` } });
  t.equal(res.status, 200);
});

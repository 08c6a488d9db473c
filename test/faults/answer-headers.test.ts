// An answer's headers, content type and status phrase count in max_response_size as its body
// does: a handler that sets megabytes of them gets the 500 of a too-large answer, not a way past
// the limit. The model serves on.
import { request } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { buildMar, FIXTURES, startTestServer, waitReady } from '../helpers.js';
import { survived } from './survival.js';

const MAX = 256 * 1024;
const TOO_LARGE = { code: 500, type: 'InternalServerException', message: `Response is larger than max_response_size (${MAX} bytes).` };

/** POSTs `body` and reads the answer whatever the size of its headers (fetch refuses those over 16 KiB). */
function predict(url: string, body: string): Promise<{ status: number; headerBytes: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', maxHeaderSize: 64 * 1024 * 1024, timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headerBytes: res.rawHeaders.reduce((n, h) => n + Buffer.byteLength(h), 0) + Buffer.byteLength(res.statusMessage ?? ''),
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('no answer in 60 s')));
    req.end(body);
  });
}

function json(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text.slice(0, 100);
  }
}

t.test('response headers, content type and status phrase count in max_response_size', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'heads', version: '1.0', handler: join(FIXTURES, 'header_handler.ts') }),
    properties: { load_models: 'heads.mar', max_response_size: String(MAX) },
  });
  await waitReady(server.urls.management, 'heads');
  const url = `${server.urls.inference}/predictions/heads`;
  let sent = 0;
  let answered = 0;
  const ask = async (command: string): Promise<{ status: number; headerBytes: number; body: string }> => {
    sent++;
    const res = await predict(url, command);
    answered++;
    return res;
  };
  const small = await ask('header:1000');
  t.equal(small.status, 200, 'a header of 1000 bytes is served');

  for (const command of [`header:${2 * MAX}`, 'headers:400', `type:${2 * MAX}`, `phrase:${2 * MAX}`]) {
    const res = await ask(command);
    t.equal(res.status, 500, `${command}: 500 (answered ${res.headerBytes} bytes of headers)`);
    t.ok(res.headerBytes < MAX, `${command}: the large headers were not sent`);
    t.same(json(res.body), TOO_LARGE, `${command}: naming the limit`);
  }
  t.equal((await ask('after')).body, 'ok', 'the model serves on');
  await survived(t, server, { models: ['heads'], sent, answered });
});

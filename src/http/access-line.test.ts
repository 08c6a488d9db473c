// An access-log line's bytes are TorchServe's access_log.log contract: the client, the request line
// between quotes (escaped as nginx escapes it), the status and the milliseconds, and a traced
// request's trace id. Its escaping is skipped for a line with nothing to escape (a refusal flood's
// lines): the bytes stay the same, with an escape or without. test/faults/access-log-lines sends
// what Node's parser lets through raw; here the line itself, exactly.
import { createServer, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import t from 'tap';
import { accessLine } from './listener.js';

/**
 * The access-log lines `lines` makes of the request Node parsed from `head` (sent raw, as latin1),
 * while its connection is open, and the client's port. Rejects when the connection ends first.
 */
async function linesOf(head: string, lines: (request: IncomingMessage) => string[]): Promise<{ lines: string[]; port: number }> {
  let made: string[] = [];
  const server = createServer((req, res) => {
    made = lines(req);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await new Promise((resolve, reject) => {
      const client = connect((server.address() as { port: number }).port, '127.0.0.1');
      const port = (): number => client.localPort ?? 0;
      client.on('error', reject);
      client.on('data', () => {
        resolve({ lines: made, port: port() });
        client.destroy();
      });
      client.on('close', () => reject(new Error('the connection ended unanswered')));
      client.write(head, 'latin1');
    });
  } finally {
    server.close();
  }
}

t.test("a refusal's line, and a traced one's, byte for byte", async (t) => {
  const { lines, port } = await linesOf('POST /predictions/mnist HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n', (request) => [
    accessLine(request, 503, 0.4),
    accessLine(request, 200, 12.5, 'abc'),
  ]);
  t.same(lines, [`/127.0.0.1:${port} "POST /predictions/mnist HTTP/1.1" 503 0`, `/127.0.0.1:${port} "POST /predictions/mnist HTTP/1.1" 200 13 trace_id=abc`]);
});

t.test('a request line with quotes: each escaped, the rest as sent', async (t) => {
  const { lines, port } = await linesOf('GET /models/a"b" HTTP/1.1\r\nHost: x\r\n\r\n', (request) => [accessLine(request, 200, 1)]);
  t.same(lines, [`/127.0.0.1:${port} "GET /models/a\\x22b\\x22 HTTP/1.1" 200 1`]);
});

// POSTs on kept-alive connections through node:http, for the fault tests that send hundreds of
// requests counted, not timed: fetch (undici) cost the test's process about 1 CPU-ms a request,
// as much as the server spent answering it.
import { Agent, request } from 'node:http';

export interface Answer {
  readonly status: number;
  readonly body: string;
}

/** An agent keeping up to `connections` connections alive; destroy it when done. */
export function keptAlive(connections: number): Agent {
  return new Agent({ keepAlive: true, maxSockets: connections });
}

/** POSTs `body` as text on one of `agent`'s connections: its answer, or undefined when none came (an error, or `timeoutMs`). */
export function post(agent: Agent, url: string, body: string, timeoutMs = 30_000): Promise<Answer | undefined> {
  return new Promise((resolve) => {
    const headers = { 'content-type': 'text/plain;charset=UTF-8', 'content-length': Buffer.byteLength(body) };
    const req = request(url, { method: 'POST', agent, headers, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.once('error', () => resolve(undefined));
    });
    req.once('error', () => resolve(undefined));
    req.end(body);
  });
}

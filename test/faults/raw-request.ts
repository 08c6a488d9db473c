// A request written byte for byte on a connection of its own, for what fetch will not send (a
// broken Content-Length, a bad %-escape, headers in two writes): the socket, its answer unread;
// or several pipelined in one write, and what came back (exchange).
import { connect, type Socket } from 'node:net';

export function rawRequest(url: string, raw: string): Socket {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname, () => socket.write(raw));
  socket.setTimeout(30_000, () => socket.destroy(new Error('no answer in 30 s')));
  return socket;
}

/** A status line, also right after a body without a line end of its own. */
export const STATUS_LINE = /HTTP\/1\.1 \d{3} /g;

/**
 * Writes `raw` on a new connection in one write and reads until `answers` status lines came, or
 * it closed, or 10 s; what came, and the connection's local port (its access lines').
 */
export function exchange(url: string, raw: string, answers = Number.POSITIVE_INFINITY): Promise<{ text: string; port: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    let local = 0;
    const socket = connect(Number(port), hostname, () => {
      local = socket.localPort ?? 0;
      socket.write(raw, 'latin1');
    });
    let text = '';
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, port: local });
    };
    const timer = setTimeout(done, 10_000);
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if ((text.match(STATUS_LINE) ?? []).length >= answers) done();
    });
    socket.on('error', () => undefined);
    socket.on('close', done);
  });
}

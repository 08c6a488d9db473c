// A request written byte for byte on a connection of its own, for what fetch will not send (a
// broken Content-Length, a bad %-escape, headers in two writes): the socket, its answer unread.
import { connect, type Socket } from 'node:net';

export function rawRequest(url: string, raw: string): Socket {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname, () => socket.write(raw));
  socket.setTimeout(30_000, () => socket.destroy(new Error('no answer in 30 s')));
  return socket;
}

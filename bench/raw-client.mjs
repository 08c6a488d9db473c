// The open-loop generator's HTTP client: keep-alive sockets with one request in flight each, the
// request as bytes made once, and answers read by their status line and Content-Length. undici
// spent 0.3-0.9 of a core (of this machine's two) building and parsing what this does not build,
// which the server under test then lacked; this client costs a fraction of that, so what a load
// measures is the server. It speaks only what tsserve answers a prediction with: no chunked
// bodies, no 1xx; a socket the server closes is replaced.
import { connect } from 'node:net';

export class RawClient {
  /** `request`: the whole HTTP/1.1 request, headers and body; `maxSockets` bounds the sockets. */
  constructor(origin, request, maxSockets = 1024) {
    const { hostname, port } = new URL(origin);
    this.host = hostname;
    this.port = Number(port);
    this.request = request;
    this.maxSockets = maxSockets;
    this.idle = [];
    this.open = 0;
    this.waiting = [];
  }

  /** Resolves with the answer's `status` and `body`, or rejects when the connection fails before one. */
  send() {
    return new Promise((resolve, reject) => {
      const job = { resolve, reject };
      const socket = this.idle.pop();
      if (socket) this.start(socket, job);
      else if (this.open < this.maxSockets) this.start(this.connect(), job);
      else this.waiting.push(job);
    });
  }

  close() {
    for (const s of this.idle.splice(0)) s.destroy();
  }

  connect() {
    this.open++;
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const answer = parseAnswer(buffered);
      if (!answer) return;
      buffered = buffered.subarray(answer.length);
      const job = socket.job;
      socket.job = undefined;
      if (answer.close) socket.end();
      else this.release(socket);
      job.resolve(answer);
    });
    const fail = (err) => {
      if (socket.gone) return;
      socket.gone = true;
      this.open--;
      this.idle = this.idle.filter((s) => s !== socket);
      socket.job?.reject(err ?? new Error('connection closed before an answer'));
      socket.job = undefined;
      const next = this.waiting.shift();
      if (next) this.start(this.connect(), next);
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
    return socket;
  }

  start(socket, job) {
    socket.job = job;
    socket.write(this.request);
  }

  release(socket) {
    const next = this.waiting.shift();
    if (next) this.start(socket, next);
    else this.idle.push(socket);
  }
}

/** A POST of `body` to `path` as bytes, keep-alive. */
export function rawPost(origin, path, body, contentType) {
  const { host } = new URL(origin);
  const head = `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

const HEAD_END = Buffer.from('\r\n\r\n');

/** The first whole answer in `bytes`: its status, its length in bytes, whether the server closes; or undefined. */
function parseAnswer(bytes) {
  const end = bytes.indexOf(HEAD_END);
  if (end < 0) return undefined;
  const head = bytes.toString('latin1', 0, end).toLowerCase();
  const length = Number(/\r\ncontent-length: *(\d+)/.exec(head)?.[1] ?? 0);
  const total = end + 4 + length;
  if (bytes.length < total) return undefined;
  return { status: Number(head.slice(9, 12)), body: bytes.subarray(end + 4, total), length: total, close: /\r\nconnection: *close/.test(head) };
}

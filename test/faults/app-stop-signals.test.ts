// tsserve-app stops on SIGTERM and SIGINT as a pod's container must: it stops accepting, answers
// the uploads it is forwarding, and exits 0, also with a client's idle keep-alive connection
// open; a forward still waiting on tsserve after the drain timeout is answered 503, not left
// hanging. It used to ignore both: killed by the signal's default action outside a container,
// and as a container's PID 1 (which gets no default action) killed only at the end of the pod's
// grace period. A forward tsserve never answers is answered 504 after --forward-timeout, not held
// (review finding F7). tsserve is played by a plain node:http server on 127.0.0.1 that answers slowly.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { freePort, ROOT, waitFor } from '../helpers.js';

const APP = join(ROOT, 'bin', 'tsserve-app.js');
const UPLOAD_BYTES = 3 * 1024 ** 2;
const CHUNK_BYTES = 256 * 1024;
/** The bound for a stop with nothing in flight. */
const IDLE_STOP_BOUND_MS = 5_000;
/** "Promptly" with a request in flight: a correctness bound, far above the answer's delay. */
const STOP_BOUND_MS = 10_000;

/** A stand-in for tsserve: reads each prediction's body whole, then answers `{received}` after `delayMs`; `/predictions/hang` never answers. */
async function upstream(t: Test, delayMs: number): Promise<{ url: string; arrived: () => number }> {
  let arrived = 0;
  const held: ServerResponse[] = [];
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/ping') return void res.end('{"status":"Healthy"}');
    if (!req.url?.startsWith('/predictions/')) return void res.writeHead(404).end();
    arrived++;
    let received = 0;
    req.on('data', (chunk: Buffer) => (received += chunk.length));
    req.on('end', () => {
      if (req.url === '/predictions/hang') return void held.push(res);
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ received })), delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const res of held) res.destroy();
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, arrived: () => arrived };
}

/** `tsserve-app` in front of `inference` on a free port, once it listens. */
async function startApp(t: Test, inference: string, extra: string[] = []): Promise<{ child: ChildProcess; base: string; port: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, [APP, '--port', String(port), '--inference', inference, '--management', inference, '--metrics', inference, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const read = (chunk: Buffer): void => {
      out += chunk.toString();
      if (out.includes('tsserve-app on')) resolve();
    };
    child.stdout!.on('data', read);
    child.stderr!.on('data', read);
    child.once('exit', (code) => reject(new Error(`tsserve-app exited (${code}) before it listened: ${out}`)));
  });
  return { child, base: `http://127.0.0.1:${port}`, port };
}

function exit(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Whether a new connection to `port` is refused: the app no longer accepts. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/** An upload of UPLOAD_BYTES whose first third is sent at once, the rest when `rest` settles. */
function upload(url: string, rest: Promise<void>): Promise<Response> {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === UPLOAD_BYTES / 3) await rest;
      controller.enqueue(new Uint8Array(CHUNK_BYTES).fill(55));
      sent += CHUNK_BYTES;
      if (sent >= UPLOAD_BYTES) controller.close();
    },
  });
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body,
    duplex: 'half',
    signal: AbortSignal.timeout(30_000),
  } as RequestInit);
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal} with nothing in flight and an idle keep-alive connection: exit 0 within 5 s`, async (t) => {
    const tsserve = await upstream(t, 0);
    const app = await startApp(t, tsserve.url);
    // Answered on a keep-alive connection, which then sits idle in this process's pool.
    const health = await fetch(`${app.base}/api/health`);
    t.equal(health.status, 200);
    t.equal(health.headers.get('connection'), 'keep-alive', 'the connection is kept alive');
    await health.arrayBuffer();
    const exited = exit(app.child);
    const signalled = performance.now();
    app.child.kill(signal);
    t.same(await exited, { code: 0, signal: null }, 'exit 0');
    const tookMs = Math.round(performance.now() - signalled);
    t.ok(tookMs < IDLE_STOP_BOUND_MS, `within ${IDLE_STOP_BOUND_MS / 1000} s (${tookMs} ms)`);
  });

  t.test(`${signal} while a 3 MB upload is in flight: it is forwarded whole and answered 200, then exit 0`, async (t) => {
    const tsserve = await upstream(t, 500);
    const app = await startApp(t, tsserve.url);
    let sendRest = (): void => {};
    const answer = upload(
      `${app.base}/api/predict/mnist`,
      new Promise<void>((resolve) => {
        sendRest = resolve;
      }),
    );
    await waitFor(() => tsserve.arrived() === 1, 10_000, 'the upload to reach tsserve');
    const exited = exit(app.child);
    const signalled = performance.now();
    app.child.kill(signal);
    await waitFor(() => refused(app.port), 5_000, 'the app to stop accepting');
    t.pass('a new connection is refused while the upload is still being sent');
    sendRest();
    const res = await answer;
    t.equal(res.status, 200, "the upload is answered with tsserve's answer");
    t.same(await res.json(), { received: UPLOAD_BYTES }, 'every byte of it was forwarded');
    t.same(await exited, { code: 0, signal: null }, 'then the app exits 0');
    const tookMs = Math.round(performance.now() - signalled);
    t.ok(tookMs < STOP_BOUND_MS, `within ${STOP_BOUND_MS / 1000} s (${tookMs} ms)`);
  });
}

t.test('a forward tsserve has not answered when the drain timeout ends is answered 503, then exit 0', async (t) => {
  const tsserve = await upstream(t, 0);
  const app = await startApp(t, tsserve.url, ['--drain-timeout', '1']);
  const answer = fetch(`${app.base}/api/predict/hang`, { method: 'POST', body: 'x', signal: AbortSignal.timeout(30_000) });
  await waitFor(() => tsserve.arrived() === 1, 10_000, 'the request to reach tsserve');
  const exited = exit(app.child);
  const signalled = performance.now();
  app.child.kill('SIGTERM');
  const res = await answer;
  t.equal(res.status, 503, 'answered 503');
  t.match(await res.json(), { code: 503, message: /stopping, and the model server did not answer within its drain timeout \(1 s\)/ });
  t.same(await exited, { code: 0, signal: null }, 'then the app exits 0');
  const tookMs = Math.round(performance.now() - signalled);
  t.ok(tookMs < STOP_BOUND_MS, `within ${STOP_BOUND_MS / 1000} s (${tookMs} ms)`);
});

t.test('--forward-timeout: a forward tsserve never answers is answered 504, saying so, and the app serves on', async (t) => {
  const tsserve = await upstream(t, 0);
  const app = await startApp(t, tsserve.url, ['--forward-timeout', '1']);
  const res = await fetch(`${app.base}/api/predict/hang`, { method: 'POST', body: 'x', signal: AbortSignal.timeout(30_000) });
  t.equal(res.status, 504, 'answered 504');
  t.same(await res.json(), {
    code: 504,
    type: 'GatewayTimeoutException',
    message: 'The model server did not answer within 1 s (tsserve-app --forward-timeout). Try again later.',
  });
  const next = await fetch(`${app.base}/api/predict/quick`, { method: 'POST', body: 'x', signal: AbortSignal.timeout(30_000) });
  t.same([next.status, await next.json()], [200, { received: 1 }], 'the next forward is answered');
});

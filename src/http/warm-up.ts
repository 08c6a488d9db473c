/**
 * @module http/warm-up
 * The front end's warm-up. Before `--start` returns, the server sends its own inference listener
 * predictions of each start-up model whose model-config.yaml names a `warmupFile`, on a few
 * connections, for `front_end_warmup_ms`. A cold front end (its JavaScript not yet optimised, its
 * young heap still growing) costs about twice what a warm one does per request: in its first
 * seconds it refused 5-23% of 0.8x its capacity, and two seconds of its own traffic first brought
 * that to 0.4-1.3% (docs/performance.md). Workers warm themselves (worker/entry.ts); this warms
 * the path between the socket and them.
 *
 * These requests carry a key each process makes anew, accepted only while the warm-up runs: they
 * pass token authorization, are counted in no metric, logged nowhere, and the key does not reach
 * the handler.
 */
import { randomUUID } from 'node:crypto';
import { Agent as HttpAgent, type IncomingHttpHeaders, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

export const WARM_UP_HEADER = 'x-tsserve-warm-up';
const CONNECTIONS = 32;
const key = randomUUID();
let running = false;

/** Whether a request is the warm-up's own: its key, while the warm-up runs. */
export function isWarmUp(headers: IncomingHttpHeaders): boolean {
  return running && headers[WARM_UP_HEADER] === key;
}

export interface WarmUpSample {
  readonly model: string;
  readonly body: Buffer;
}

/**
 * Sends the samples, in turn, to `/predictions/{model}` of the listener at `url` (as bound: a
 * wildcard host is reached on loopback) for `budgetMs`. A sample answered anything but 200 is not
 * sent again: a handler that refuses it would otherwise log an error for each. Resolves with the
 * number answered 200; 0 at once for a Unix socket or nothing to send.
 */
export async function warmFrontEnd(url: string, samples: readonly WarmUpSample[], budgetMs: number): Promise<number> {
  if (samples.length === 0 || budgetMs <= 0 || !/^https?:/.test(url)) return 0;
  const listener = loopbackTarget(url);
  const until = performance.now() + budgetMs;
  const live = [...samples];
  let next = 0;
  let answered = 0;
  running = true;
  try {
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (live.length > 0 && performance.now() < until) {
          const sample = live[next++ % live.length]!;
          const status = await post(listener, sample, budgetMs);
          if (status === 0) return; // the listener is gone or the worker hung: no use going on
          if (status === 200) answered++;
          else if (live.includes(sample)) live.splice(live.indexOf(sample), 1);
        }
      }),
    );
  } finally {
    running = false;
    listener.agent.destroy();
  }
  return answered;
}

interface Target {
  readonly host: string;
  readonly port: string;
  readonly tls: boolean;
  readonly agent: HttpAgent;
}

/** The listener at `url`, a wildcard host as loopback; TLS without checking its certificate: it is this process. */
function loopbackTarget(url: string): Target {
  const target = new URL(url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//[::1]:'));
  const tls = target.protocol === 'https:';
  return {
    host: target.hostname.replace(/^\[|\]$/g, ''),
    port: target.port,
    tls,
    agent: tls ? new HttpsAgent({ keepAlive: true, rejectUnauthorized: false }) : new HttpAgent({ keepAlive: true }),
  };
}

/** POSTs one sample with the warm-up's key; resolves with the status, 0 when there was none. */
function post({ host, port, tls, agent }: Target, sample: WarmUpSample, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const options = {
      host,
      port,
      path: `/predictions/${encodeURIComponent(sample.model)}`,
      method: 'POST',
      agent,
      headers: { [WARM_UP_HEADER]: key, 'content-length': sample.body.length },
      timeout: timeoutMs,
    };
    const req = (tls ? httpsRequest : httpRequest)(options, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end(sample.body);
  });
}

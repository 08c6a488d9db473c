/**
 * @module http/warm-up
 * The front end's warm-up. Before `--start` returns, the server sends its own inference listener
 * predictions of each start-up model whose model-config.yaml names a `warmupFile`, on up to 32
 * connections, for `front_end_warmup_ms`. A cold front end (its JavaScript not yet optimised, its
 * young heap still growing) costs about twice what a warm one does per request, and in its first
 * seconds refused part of a load the warm server takes whole; this made those refusals about a
 * third as many (docs/performance.md). Workers warm themselves (worker/entry.ts); this warms the
 * path between the socket and them.
 *
 * These requests send the inference key as any client does (with token authorization on), and
 * each a ticket of its own, good for one request: by it they are counted in no metric, logged
 * nowhere, and no load for the workers to follow (workers/scaler.ts); it does not reach the
 * handler. Tickets, not a key recognised only while the warm-up runs: the server reads some of
 * its requests after the warm-up gave up on their answers (a loaded machine's new connections,
 * read 0.9 s late: past the timeout, which is the budget), and such a key made them clients':
 * logged, counted, and load that added a worker.
 */
import { randomUUID } from 'node:crypto';
import { Agent as HttpAgent, type IncomingMessage, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

export const WARM_UP_HEADER = 'x-tsserve-warm-up';
const CONNECTIONS = 32;
/** A model whose lone prediction takes this long (past its batch delay) is tried PROBES times at most. */
export const SLOW_MS = 100;
const PROBES = 3;
/** The tickets of the warm-up's requests that the server has not read yet. */
const tickets = new Set<string>();
/** Whether each request that came with a ticket is the warm-up's own, decided as it was first asked. */
const ownRequests = new WeakMap<IncomingMessage, boolean>();

/**
 * Whether a request is the warm-up's own: the first to bring a ticket the warm-up gave, asked
 * about as often as need be during its life. A ticket of a request the server never read (its
 * connection closed first) stays good: at most one a connection, as a connection stops at its
 * first failure.
 */
export function isWarmUp(request: IncomingMessage): boolean {
  const ticket = request.headers[WARM_UP_HEADER];
  if (ticket === undefined) return false;
  let own = ownRequests.get(request);
  if (own === undefined) {
    own = typeof ticket === 'string' && tickets.delete(ticket);
    ownRequests.set(request, own);
  }
  return own;
}

/** A ticket for one more request of the warm-up's. */
function ticket(): string {
  const issued = randomUUID();
  tickets.add(issued);
  return issued;
}

export interface WarmUpSample {
  readonly model: string;
  readonly body: Buffer;
  /** How long a lone prediction waits for its batch to fill (max_batch_delay, when batching). */
  readonly batchDelayMs: number;
}

/** What the warm-up did: predictions answered 200, and the models found too slow to repeat. */
export interface WarmUpResult {
  readonly answered: number;
  readonly slow: readonly string[];
}

/**
 * Sends each sample alone to `/predictions/{model}` of the listener at `url` (as bound: a wildcard
 * host is reached on loopback), up to PROBES times until an answer comes within SLOW_MS (plus the
 * time a lone prediction waits for its batch); then each quick one on its share of CONNECTIONS
 * connections until `budgetMs` is spent. A sample answered anything but 200 is not sent again (a
 * handler that refuses it would log an error for each), nor a slow one (unanswered within the
 * budget is slow too, not refused): beside such a model the
 * front end's cost is nothing, and queued warm-up predictions would hold its first clients up.
 * (The first answers of a cold server are slow whatever the model, hence more than one try.)
 * Nothing is sent for a Unix socket.
 */
export async function warmFrontEnd(url: string, samples: readonly WarmUpSample[], budgetMs: number, authorization: string | undefined): Promise<WarmUpResult> {
  if (samples.length === 0 || budgetMs <= 0 || !/^https?:/.test(url)) return { answered: 0, slow: [] };
  const listener = loopbackTarget(url, authorization);
  const until = performance.now() + budgetMs;
  try {
    const connections = Math.ceil(CONNECTIONS / samples.length);
    const warmed = await Promise.all(
      samples.map(async (sample) => {
        const found = await probe(listener, sample, until);
        const more = found.verdict === 'fast' ? await keepSending(listener, sample, connections, until) : 0;
        return { model: sample.model, verdict: found.verdict, answered: found.answered + more };
      }),
    );
    return {
      answered: warmed.reduce((sum, w) => sum + w.answered, 0),
      slow: warmed.filter((w) => w.verdict === 'slow').map((w) => w.model),
    };
  } finally {
    listener.agent.destroy();
  }
}

/** `connections` loops sending `sample` until `until`, all stopping at its first answer other than 200; resolves with the number answered 200. */
async function keepSending(listener: Target, sample: WarmUpSample, connections: number, until: number): Promise<number> {
  let answered = 0;
  let refused = false;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (!refused && performance.now() < until) {
        const status = await post(listener, sample, until);
        if (status === 200) answered++;
        else refused = true; // refused, or the listener gone or the worker hung: no use going on
      }
    }),
  );
  return answered;
}

/** Up to PROBES answers of `sample` one after the other, until one is quick; what it found. */
async function probe(listener: Target, sample: WarmUpSample, until: number): Promise<{ verdict: 'fast' | 'slow' | 'refused'; answered: number }> {
  let answered = 0;
  while (answered < PROBES && performance.now() < until) {
    const began = performance.now();
    const status = await post(listener, sample, until);
    // Unanswered within the budget is slower than slow (a loaded machine's first answer of a 150 ms model took over 1 s).
    if (status === UNANSWERED) return { verdict: 'slow', answered };
    if (status !== 200) return { verdict: 'refused', answered };
    answered++;
    if (performance.now() - began < SLOW_MS + sample.batchDelayMs) return { verdict: 'fast', answered };
  }
  return { verdict: 'slow', answered };
}

interface Target {
  readonly host: string;
  readonly port: string;
  readonly tls: boolean;
  readonly agent: HttpAgent;
  /** The inference key when token authorization is on. */
  readonly headers: Record<string, string>;
}

/** The listener at `url`, a wildcard host as loopback; TLS without checking its certificate: it is this process. */
function loopbackTarget(url: string, authorization: string | undefined): Target {
  const target = new URL(url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//[::1]:'));
  const tls = target.protocol === 'https:';
  return {
    host: target.hostname.replace(/^\[|\]$/g, ''),
    port: target.port,
    tls,
    agent: tls ? new HttpsAgent({ keepAlive: true, rejectUnauthorized: false }) : new HttpAgent({ keepAlive: true }),
    headers: authorization ? { authorization } : {},
  };
}

/** post's status for a prediction not answered by the end of the budget. */
const UNANSWERED = -1;

/**
 * POSTs one sample with the target's headers and a ticket; resolves with the status: UNANSWERED
 * at `until` (the budget's end: a prediction waiting the whole budget from its start made a start-up
 * twice front_end_warmup_ms), 0 when the connection failed.
 */
function post({ host, port, tls, agent, headers }: Target, sample: WarmUpSample, until: number): Promise<number> {
  return new Promise((resolve) => {
    const options = {
      host,
      port,
      path: `/predictions/${encodeURIComponent(sample.model)}`,
      method: 'POST',
      agent,
      headers: { ...headers, [WARM_UP_HEADER]: ticket(), 'content-length': sample.body.length },
      timeout: Math.max(1, until - performance.now()),
    };
    let timedOut = false;
    const req = (tls ? httpsRequest : httpRequest)(options, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(timedOut ? UNANSWERED : 0));
    });
    req.on('timeout', () => {
      timedOut = true;
      req.destroy();
    });
    req.on('error', () => resolve(timedOut ? UNANSWERED : 0));
    req.end(sample.body);
  });
}

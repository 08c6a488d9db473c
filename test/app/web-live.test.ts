// The live page in real Chromium under a bounded load: a real tsserve serving mnist, clients
// predicting for at most 60 s or 20,000 requests, and the page charting tsserve's /metrics as it
// changes. Its screenshot goes to test/screenshots/live.png.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openApp, SHOTS } from '../browser.js';
import { buildMnistMar, MNIST_DIR, startTestServer, waitReady } from '../helpers.js';

const CLIENTS = 4;
const MAX_REQUESTS = 20_000;
const MAX_LOAD_MS = 60_000;
/**
 * Each client's pause between its answer and its next request: about 40 predictions a second, tens
 * in each of the page's one-second polls, so that every point has a throughput and a latency.
 * Unpaced, the clients kept both cores busy for the 15 s the page is watched (most of this file's
 * CPU) and proved nothing more.
 */
const PAUSE_MS = 100;

/** Clients predicting until `stop()` or the bounds above; the statuses they got. */
function load(url: string, body: Buffer): { stop(): Promise<Map<number, number>> } {
  const statuses = new Map<number, number>();
  const until = Date.now() + MAX_LOAD_MS;
  let sent = 0;
  let stopped = false;
  const client = async (): Promise<void> => {
    while (!stopped && sent < MAX_REQUESTS && Date.now() < until) {
      sent++;
      const res = await fetch(url, { method: 'POST', body });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
    }
  };
  const clients = Promise.all(Array.from({ length: CLIENTS }, client));
  return {
    async stop() {
      stopped = true;
      await clients;
      return statuses;
    },
  };
}

/** What a chart of a model drew: its points, each the values of its lines. */
const drawn = (model: string, chart: string): string =>
  `document.querySelector('section[data-model="${model}"] figure[data-chart="${chart}"] svg')?.dataset.values ?? '[]'`;

t.test('the live page charts each model from /metrics, and the charts move while it is watched', async (t) => {
  mkdirSync(SHOTS, { recursive: true });
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store), properties: { load_models: 'mnist.mar' } });
  await waitReady(server.urls.management, 'mnist');
  const { appUrl, page } = await openApp(
    t,
    { inference: server.urls.inference, management: server.urls.management, metrics: server.urls.metrics },
    { width: 1200, height: 900 },
  );
  const traffic = load(`${server.urls.inference}/predictions/mnist`, readFileSync(join(MNIST_DIR, 'digits', '7_0.png')));
  t.teardown(() => traffic.stop());

  await page.goto(`${appUrl}/live`);
  // Page-side code is passed as text: the tests are compiled without the DOM's types.
  await page.waitForFunction(`JSON.parse(${drawn('mnist', 'throughput')}).length >= 3`, undefined, { timeout: 30_000 });
  const first = JSON.parse((await page.evaluate(drawn('mnist', 'throughput'))) as string) as number[][];
  await page.waitForFunction(`(${drawn('mnist', 'throughput')}) !== ${JSON.stringify(JSON.stringify(first))}`, undefined, { timeout: 10_000 });
  const second = JSON.parse((await page.evaluate(drawn('mnist', 'throughput'))) as string) as number[][];
  t.not(JSON.stringify(second), JSON.stringify(first), 'the throughput chart changed between two reads');
  t.ok(second.length > first.length || second.at(-1)![0] !== first.at(-1)![0], 'with a new point');
  t.ok(second.at(-1)![0]! > 0, `predictions a second under load: ${second.at(-1)![0]}`);

  const workers = JSON.parse((await page.evaluate(drawn('mnist', 'workers'))) as string) as number[][];
  t.ok(workers.at(-1)![0]! >= 1, `workers ready: ${workers.at(-1)![0]}`);
  const latency = JSON.parse((await page.evaluate(drawn('mnist', 'latency'))) as string) as Array<Array<number | null>>;
  t.ok(
    latency.at(-1)!.every((v) => v !== null && v > 0),
    `a latency: ${JSON.stringify(latency.at(-1))}`,
  );
  // p50 and p99 where tsserve serves ts_request_seconds; TorchServe's mean where it does not.
  const histogram = (await (await fetch(`${server.urls.metrics}/metrics`)).text()).includes('ts_request_seconds_bucket{model_name="mnist"');
  const legend = await page.locator('section[data-model="mnist"] figure[data-chart="latency"] .legend li').allTextContents();
  t.same(
    legend.map((line) => line.replace(/: [\d.]+ m?s$/, '')),
    histogram ? ['p50', 'p99'] : ['mean'],
    `the latency chart's lines: ${legend.join(', ')}`,
  );
  const queue = JSON.parse((await page.evaluate(drawn('mnist', 'queue'))) as string) as number[][];
  t.ok(queue.at(-1)![1]! > 0, `room left in the queue: ${queue.at(-1)![1]}`);
  t.match(await page.textContent('section[data-model="mnist"] figure[data-chart="throughput"] .legend'), /^predictions\/s: [\d.]+\/s$/);
  t.match(await page.textContent('section[data-model=""] h3'), 'Server', "and the server's own charts");
  t.equal(await page.getAttribute('script[src="/live.js"]', 'type'), 'module');
  // A screenshot with a few seconds of history drawn (six polls: the suite's last files wait on this).
  await page.waitForFunction(`JSON.parse(${drawn('mnist', 'throughput')}).length >= 6`, undefined, { timeout: 30_000 });
  await page.screenshot({ path: join(SHOTS, 'live.png'), fullPage: true });

  const statuses = await traffic.stop();
  t.same([...statuses.keys()], [200], `every prediction of the load answered 200: ${JSON.stringify([...statuses])}`);
});

t.test('the live page says so when tsserve-app has no metrics API to read', async (t) => {
  const { appUrl, page } = await openApp(t, { inference: 'http://127.0.0.1:9', management: 'http://127.0.0.1:9', metrics: 'http://127.0.0.1:9' });
  await page.goto(`${appUrl}/live`);
  await page.waitForFunction("document.getElementById('status').textContent !== ''");
  t.equal(await page.textContent('#status'), 'The metrics API does not answer. Is tsserve running, with metrics_mode prometheus?');
  t.equal(await page.locator('section.live-model').count(), 0, 'no charts of nothing');
});

// metrics_mode=log, as TorchServe's log mode: what is not served is logged, histograms included,
// as TorchServe's log-mode metric lines, with one exception docs/metrics.md states and says why:
// the five seconds histograms (a line per prediction and stage would be a log no one reads). This
// pins both: ts_batch_size, ts_model_load_seconds and ts_worker_start_milliseconds are lines of
// ts_metrics.log, the five are not, and the docs say so.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { predict, serve } from '../echo-model.js';
import { ROOT, waitFor, waitReady } from '../helpers.js';
import { survived } from './survival.js';

const LOGGED = ['ts_batch_size.Count:1.0|#', 'ts_model_load_seconds.Seconds:', 'ts_worker_start_milliseconds.Milliseconds:'];
const NOT_LOGGED = ['ts_request_seconds', 'ts_queue_wait_seconds', 'ts_preprocess_seconds', 'ts_inference_seconds', 'ts_postprocess_seconds'];

t.test("metrics_mode=log: tsserve's histograms are ts_metrics.log lines, but for the five the docs name", async (t) => {
  const server = await serve(t, { load_models: 'echo.mar', metrics_mode: 'log', disable_system_metrics: 'true' });
  await waitReady(server.urls.management, 'echo');
  const sent = 3;
  let answered = 0;
  for (let i = 0; i < sent; i++) if ((await predict(server, 'echo', 'hello')).status === 200) answered++;
  const file = join(server.dir, 'logs', 'ts_metrics.log');
  const read = (): string => (existsSync(file) ? readFileSync(file, 'utf8') : '');
  await waitFor(() => LOGGED.every((l) => read().includes(l)), 5000, 'the histograms logged').catch(() => undefined);
  const log = read();
  for (const line of LOGGED) t.ok(log.includes(line), `ts_metrics.log has ${line}...`);
  t.match(log, /ts_batch_size\.Count:1\.0\|#model_name:echo,model_version:1\.0\|#hostname:[^,]+,timestamp:\d+/, "in TorchServe's log-mode line format");
  for (const name of NOT_LOGGED) t.notOk(log.includes(name), `${name} is not logged`);
  const docs = readFileSync(join(ROOT, 'docs', 'metrics.md'), 'utf8');
  const said = docs.replace(/\s+/g, ' ');
  t.match(said, /neither serve nor log the five seconds histograms: .* no one reads/, 'docs/metrics.md says the five are not logged, and why');
  for (const name of ['ts_batch_size', 'ts_model_load_seconds', 'ts_worker_start_milliseconds']) {
    t.match(said, new RegExp(`modes serve none of them; they write .*\`${name}\`.* to ts_metrics\\.log`), `docs/metrics.md says ${name} is logged`);
  }
  t.equal(await (await fetch(`${server.urls.metrics}/metrics`)).text(), '', 'log mode serves nothing');
  await survived(t, server, { models: ['echo'], sent, answered });
});

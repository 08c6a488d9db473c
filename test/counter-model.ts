/**
 * The stateful counter model of the sequence tests (test/fixtures/counter_handler.ts) on a server of
 * its own, and one prediction on a sequence over REST.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { buildMar, FIXTURES, startTestServer, tempDir, waitReady, type TestServer } from './helpers.js';

/** The counter's answer. */
export interface Counted {
  sum: number;
  pid: number;
  batch: string[];
  started: boolean;
}

/** A server with the counter registered, `yaml` its model-config.yaml (sequenceBatching on), ready. */
export async function serveCounter(t: Test, yaml: Record<string, number | boolean>, properties: Record<string, string> = {}): Promise<TestServer> {
  const dir = tempDir(t);
  const config = join(dir, 'model-config.yaml');
  writeFileSync(
    config,
    Object.entries({ sequenceBatching: true, ...yaml })
      .map(([k, v]) => `${k}: ${v}`)
      .join('\n') + '\n',
  );
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'counter', version: '1.0', handler: join(FIXTURES, 'counter_handler.ts'), configFile: config }),
    properties: { load_models: 'counter.mar', ...properties },
  });
  await waitReady(server.urls.management, 'counter', Number(yaml.minWorkers ?? 1));
  return server;
}

/** Sends one value on a sequence (a new one without `id`); answers the response, its sum and the sequence id. */
export async function send(server: TestServer, value: string, id?: string, end = false): Promise<{ res: Response; id: string | null; counted?: Counted }> {
  const headers: Record<string, string> = { 'content-type': 'text/plain' };
  if (id) headers.ts_request_sequence_id = id;
  if (end) headers.ts_request_sequence_end = 'true';
  const res = await fetch(`${server.urls.inference}/predictions/counter`, { method: 'POST', body: value, headers });
  if (res.status !== 200) return { res, id: res.headers.get('ts_request_sequence_id') };
  return { res, id: res.headers.get('ts_request_sequence_id'), counted: (await res.json()) as Counted };
}

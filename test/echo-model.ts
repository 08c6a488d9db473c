// The echo model of test/fixtures/echo_handler.ts, served and called the way the worker tests do:
// a store holding echo.mar, registered under any name with register-API parameters.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { buildMar, FIXTURES, startTestServer, type TestServer } from './helpers.js';

export interface Echo {
  batchSize: number;
}

export interface Described {
  workers: Array<{ status: string; pid: number }>;
  jobQueueStatus: { pendingRequests: number };
}

/** echo.mar in the store, with `modelConfig` as its model-config.yaml when given; `serverLog` hears the server log from info up. */
export async function serve(t: Test, properties: Record<string, string> = {}, modelConfig?: string, serverLog?: (line: string) => void): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => {
      const configFile = modelConfig === undefined ? undefined : join(store, '..', 'model-config.yaml');
      if (configFile) writeFileSync(configFile, modelConfig!);
      buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts'), configFile });
    },
    properties,
    ...(serverLog ? { serverLog, level: 'info' as const } : {}),
  });
}

/**
 * warm.mar in `store`: the echo model whose model-config.yaml (`yaml`, then the key) names the
 * warmupFile sample.txt, `sample`: by default a body that makes the echo handler log each run
 * ("asked to print").
 */
export function buildWarmEcho(store: string, yaml = '', sample = 'print'): void {
  const files = join(store, '..');
  writeFileSync(join(files, 'warm.yaml'), `${yaml}warmupFile: sample.txt\n`);
  writeFileSync(join(files, 'sample.txt'), sample);
  buildMar(store, {
    modelName: 'warm',
    version: '1.0',
    handler: join(FIXTURES, 'echo_handler.ts'),
    configFile: join(files, 'warm.yaml'),
    extraFiles: join(files, 'sample.txt'),
  });
}

/** Registers echo.mar under `name` with the given register-API parameters, synchronously. */
export async function register(t: Test, server: TestServer, name: string, params: Record<string, string | number>): Promise<void> {
  const query = new URLSearchParams({
    url: 'echo.mar',
    model_name: name,
    synchronous: 'true',
    ...Object.fromEntries(Object.entries(params).map(([k, v]) => [k, String(v)])),
  });
  const res = await fetch(`${server.urls.management}/models?${query}`, { method: 'POST' });
  t.equal(res.status, 200, `${name} registered: ${await res.text()}`);
}

export function predict(server: TestServer, model: string, body: string): Promise<Response> {
  return fetch(`${server.urls.inference}/predictions/${model}`, { method: 'POST', body, signal: AbortSignal.timeout(60_000) });
}

export async function describe(server: TestServer, model: string): Promise<Described> {
  const [d] = (await (await fetch(`${server.urls.management}/models/${model}`)).json()) as Described[];
  return d!;
}

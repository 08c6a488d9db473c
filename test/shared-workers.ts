// Describe's view of shared workers (workers/shared-hosts.ts), for the tests of shared hosts.
import type { TestServer } from './helpers.js';

export interface SharedWorker {
  pid: number;
  status: string;
  sharedHost: boolean;
}

/** Each model's first worker as describe shows it. */
export async function sharedWorkers(server: Pick<TestServer, 'urls'>, models: string[]): Promise<Map<string, SharedWorker>> {
  const out = new Map<string, SharedWorker>();
  for (const model of models) {
    const [d] = (await (await fetch(`${server.urls.management}/models/${model}`)).json()) as Array<{ workers: SharedWorker[] }>;
    if (d?.workers[0]) out.set(model, d.workers[0]);
  }
  return out;
}

// The fault-injection tier's one verdict: after whatever a test did to the server (a hostile
// handler, a rude file server, racing clients, a full disk), the server is up, every request it
// accepted was answered, and nothing it was given is lost or leaked. Each test in test/faults/
// ends with survived().
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Test } from 'tap';
import type { TestServer } from '../helpers.js';

export interface Expectation {
  /** Models (name, or name/version) that must still be registered. */
  readonly models?: readonly string[];
  /** Requests the test sent and how many got an answer of any status (none may be left hanging). */
  readonly sent?: number;
  readonly answered?: number;
  /** The process whose worker children are counted: the in-process server by default. */
  readonly serverPid?: number;
  /** With token authorization on: the Authorization header each API's calls send. */
  readonly authorization?: { readonly inference: string; readonly management: string };
}

interface Described {
  modelName: string;
  modelVersion: string;
  workers: Array<{ pid: number }>;
}

/** Asserts the server survived: /ping answers, the models are there, every worker process belongs to one of them. */
export async function survived(t: Test, server: Pick<TestServer, 'urls'>, expect: Expectation = {}): Promise<void> {
  const auth = expect.authorization;
  const ping = await fetch(`${server.urls.inference}/ping`, { signal: AbortSignal.timeout(10_000), headers: auth ? { authorization: auth.inference } : {} });
  t.ok(ping.status === 200 || ping.status === 500, `the inference listener answers /ping (${ping.status})`);
  if (expect.sent !== undefined) t.equal(expect.answered, expect.sent, 'every request sent was answered');
  const described = await describeAll(server.urls.management, auth?.management);
  const registered = new Set(described.flatMap((d) => [d.modelName, `${d.modelName}/${d.modelVersion}`]));
  for (const name of expect.models ?? []) t.ok(registered.has(name), `${name} is still registered`);
  // A shared host's pid is each of its models' workers' (listed once); the spare host holds none,
  // nor do emptied hosts kept for the next load while no more hosts than cores run.
  const owned = [...new Set(described.flatMap((d) => d.workers.map((w) => w.pid)).filter((pid) => pid > 0))];
  const live = workerPids(expect.serverPid ?? process.pid);
  const spare = live.filter((pid) => !owned.includes(pid) && isSharedHost(pid));
  t.ok(spare.length <= availableParallelism() + 1, `at most the spare and one kept shared worker host per core hold no model (${spare.length})`);
  t.same(
    live.filter((pid) => !spare.includes(pid)).sort(),
    owned.sort(),
    'every worker process belongs to exactly one registered model, or is a shared host of registered models',
  );
}

/** The process is a shared worker host (workers/worker-host.ts sets TSSERVE_SHARED_HOST in its environment). */
function isSharedHost(pid: number): boolean {
  return readProc(String(pid), 'environ').split('\0').includes('TSSERVE_SHARED_HOST=1');
}

/** Every registered version's describe element. */
export async function describeAll(management: string, authorization?: string): Promise<Described[]> {
  const headers: Record<string, string> = authorization ? { authorization } : {};
  const list = (await (await fetch(`${management}/models?limit=100`, { headers })).json()) as { models: Array<{ modelName: string }> };
  const all: Described[] = [];
  for (const { modelName } of list.models) {
    const res = await fetch(`${management}/models/${encodeURIComponent(modelName)}/all`, { headers });
    if (res.status === 200) all.push(...((await res.json()) as Described[]));
  }
  return all;
}

/** The live worker processes (worker/entry.js) whose parent is `parent`; [] where /proc is not there. */
export function workerPids(parent: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  return entries
    .filter((pid) => {
      const status = readProc(pid, 'status');
      const ppid = /^PPid:\s+(\d+)$/m.exec(status)?.[1];
      return (parent === 0 || Number(ppid) === parent) && readProc(pid, 'cmdline').includes('worker/entry.js') && !/^State:\s+Z/m.test(status);
    })
    .map(Number);
}

function readProc(pid: string, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return '';
  }
}

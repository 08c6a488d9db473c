// The import graph of src/ keeps its shape: no module reaches itself through its imports (type
// imports included: a type cycle is a design cycle, and the next value import makes it a
// runtime one), and each folder imports only the folders LAYERS lets it. A change that breaks
// either fails here with the cycle or the import named; a new folder, or a new edge between two,
// is a line in LAYERS, made on purpose. This test is the authority on the folder graph (madge,
// `npx madge --circular --extensions ts src`, sees module cycles only).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const SRC = dirname(fileURLToPath(import.meta.url));
/** Modules at the root of src/ that import nothing of ours: anything may use them. */
const ROOT_LEAVES = [
  'errors.ts',
  'host-limits.ts',
  'is-record.ts',
  'local-time.ts',
  'replace-file.ts',
  'shown.ts',
  'tick-maps.ts',
  'timer-ms.ts',
  'version.ts',
];

/**
 * Each folder of src/ (and each root module that is no leaf), and what it may import besides the
 * root leaves, in the order a prediction travels: it comes in at http/ or grpc/, is enqueued on
 * its model's queue (batching/) or refused, is taken in a batch by one of the model's workers
 * (workers/), crosses the wire (protocol/) into a worker process (worker/), whose handler
 * (handler/) runs on onnxruntime (runtime/). models/ is the models' lifecycle; the rest serve.
 */
const LAYERS: Record<string, readonly string[]> = {
  protocol: [],
  config: [],
  auth: [],
  log: ['config'],
  metrics: ['config', 'protocol'],
  runtime: ['protocol'],
  handler: ['protocol', 'runtime'],
  worker: ['archive', 'handler', 'protocol', 'runtime'],
  archive: ['config', 'handler'],
  batching: ['config', 'metrics', 'protocol'],
  workers: ['archive', 'batching', 'config', 'log', 'metrics', 'protocol'],
  models: ['archive', 'batching', 'config', 'handler', 'log', 'workers'],
  snapshot: ['config', 'models'],
  http: ['auth', 'batching', 'config', 'log', 'metrics', 'models', 'protocol', 'workers'],
  grpc: ['auth', 'batching', 'config', 'http', 'log', 'metrics', 'models', 'protocol'],
  convert: ['archive', 'handler', 'runtime'],
  app: ['config'],
  'server.ts': ['archive', 'auth', 'config', 'grpc', 'http', 'log', 'metrics', 'models', 'snapshot', 'workers'],
  cli: ['app', 'archive', 'config', 'convert', 'handler', 'http', 'log', 'models', 'server.ts'],
  'index.ts': ['handler', 'runtime'],
};

/** Each module of src/ (tests aside) and the modules of src/ it imports, as paths under src/. */
function importGraph(): Map<string, string[]> {
  const modules = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.d.ts'));
  const graph = new Map<string, string[]>();
  for (const module of modules) {
    const source = readFileSync(join(SRC, module), 'utf8');
    const imports = [...source.matchAll(/^(?:import|export)\s[^;]*?\sfrom\s+'(\.{1,2}\/[^']+)'/gm)].map((m) =>
      relative(SRC, resolve(SRC, dirname(module), m[1]!.replace(/\.js$/, '.ts'))),
    );
    graph.set(module, imports);
  }
  return graph;
}

/** The import cycles of `graph`, each as the modules around it. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (module: string): void => {
    state.set(module, 'open');
    path.push(module);
    for (const next of graph.get(module) ?? []) {
      if (state.get(next) === 'open') found.push([...path.slice(path.indexOf(next)), next]);
      else if (!state.has(next) && graph.has(next)) visit(next);
    }
    path.pop();
    state.set(module, 'done');
  };
  for (const module of graph.keys()) if (!state.has(module)) visit(module);
  return found;
}

t.test('no module of src/ imports itself through others', async (t) => {
  const graph = importGraph();
  t.ok(graph.size > 50, `the graph was read (${graph.size} modules)`);
  t.same(
    cycles(graph).map((c) => c.join(' -> ')),
    [],
  );
});

/** The folder of a module under src/, or the module itself at the root. */
function layerOf(module: string): string {
  const slash = module.indexOf('/');
  return slash < 0 ? module : module.slice(0, slash);
}

/** The imports of `graph` that cross from one layer into another that `layers` does not let it import. */
function forbiddenImports(graph: Map<string, string[]>, layers: Record<string, readonly string[]>): string[] {
  return [...graph].flatMap(([module, imports]) =>
    imports
      .filter((i) => layerOf(i) !== layerOf(module) && !ROOT_LEAVES.includes(i) && !layers[layerOf(module)]?.includes(layerOf(i)))
      .map((i) => `${module} -> ${i}`),
  );
}

/** LAYERS as a graph of its own, for the cycle finder. */
function layerGraph(layers: Record<string, readonly string[]>): Map<string, string[]> {
  return new Map(Object.entries(layers).map(([layer, allowed]) => [layer, [...allowed]]));
}

t.test('each folder imports only the folders LAYERS lets it', async (t) => {
  t.same(forbiddenImports(importGraph(), LAYERS), []);
});

t.test('LAYERS names every folder of src/, and the root leaves import nothing of ours', async (t) => {
  const layers = new Set([...importGraph().keys()].map(layerOf));
  t.same(
    [...layers].filter((l) => !(l in LAYERS) && !ROOT_LEAVES.includes(l)),
    [],
  );
  t.same(
    ROOT_LEAVES.flatMap((leaf) => importGraph().get(leaf) ?? []),
    [],
  );
});

t.test('no folder imports one that imports it, even by way of others', async (t) => {
  t.same(cycles(layerGraph(LAYERS)), []);
  const unknown = Object.values(LAYERS)
    .flat()
    .filter((l) => !(l in LAYERS));
  t.same(unknown, [], 'every folder allowed is a folder LAYERS names');
});

t.test('gRPC management calls the model service, not the REST routes in process (fastify inject)', async (t) => {
  const graph = importGraph();
  const grpc = [...graph.keys()].filter((m) => m.startsWith('grpc/'));
  t.same(
    grpc.filter((m) => /\binject\(|InjectOptions|LightMyRequest/.test(readFileSync(join(SRC, m), 'utf8'))),
    [],
  );
  t.ok(graph.get('grpc/deps.ts')?.includes('models/model-service.ts'), 'gRPC is given the model service');
  t.ok(graph.get('http/management.ts')?.includes('models/model-service.ts'), 'and so is REST');
});

t.test('the layer check finds an import LAYERS does not allow', async (t) => {
  const graph = new Map([
    ['protocol/messages.ts', ['errors.ts']],
    ['workers/pool.ts', ['protocol/messages.ts', 'batching/job.ts']],
    ['batching/job.ts', ['workers/pool.ts', 'batching/queue.ts']],
  ]);
  const layers = { protocol: [], workers: ['protocol', 'batching'], batching: ['protocol'] };
  t.same(forbiddenImports(graph, layers), ['batching/job.ts -> workers/pool.ts']);
  t.same(cycles(layerGraph({ ...layers, batching: ['workers'] })), [['workers', 'batching', 'workers']]);
});

t.test('the cycle finder finds a cycle', async (t) => {
  const graph = new Map([
    ['a.ts', ['b.ts']],
    ['b.ts', ['c.ts']],
    ['c.ts', ['a.ts']],
    ['d.ts', ['a.ts']],
  ]);
  t.same(cycles(graph), [['a.ts', 'b.ts', 'c.ts', 'a.ts']]);
});

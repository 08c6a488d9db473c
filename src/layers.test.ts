// The import graph of src/ keeps its shape: no module reaches itself through its imports (type
// imports included: a type cycle is a design cycle, and the next value import makes it a
// runtime one), and config/ is a leaf that the rest reads. A change that breaks either fails here
// with the cycle or the import named.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const SRC = dirname(fileURLToPath(import.meta.url));
/** Modules at the root of src/ that import nothing of ours: anything may use them. */
const ROOT_LEAVES = ['errors.ts', 'is-record.ts', 'local-time.ts', 'version.ts'];

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

t.test('config/ imports nothing of ours outside it but the root leaves', async (t) => {
  const outside = [...importGraph()]
    .filter(([module]) => module.startsWith('config/'))
    .flatMap(([module, imports]) => imports.filter((i) => !i.startsWith('config/') && !ROOT_LEAVES.includes(i)).map((i) => `${module} -> ${i}`));
  t.same(outside, []);
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

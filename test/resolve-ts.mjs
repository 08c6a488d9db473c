// Lets Node.js run the TypeScript tests as they are (tap's type-strip-only: Node strips the types,
// nothing compiles them). A .ts module imports its neighbours by the names they have once built
// (`./job-queue.js`, as NodeNext asks); when that file is not there, this loads the source beside it.
import { readFileSync } from 'node:fs';
import * as nodeModule from 'node:module';
import { fileURLToPath } from 'node:url';
import { requireNodeForTests } from '../bin/require-node.js';
import { keepsStripped, strippedDir, strippedSource } from './stripped-ts.mjs';

requireNodeForTests();

// Next, as in the server's and workers' processes: nextTick's fast path (src/tick-maps.ts). Most
// test files run a front end in their own process.
await import('../src/tick-maps.ts');

// Each test file is a process, and most start servers, workers and CLIs as processes of their own:
// Node's compile cache (V8's code for each module, kept under node_modules/.cache) spares every one
// of them compiling tap, fastify and the server again: about a third of a small file's CPU. The
// processes the tests start inherit it through the variable.
process.env.NODE_COMPILE_CACHE ??= fileURLToPath(new URL('../node_modules/.cache/tsserve-tests', import.meta.url));
nodeModule.enableCompileCache(process.env.NODE_COMPILE_CACHE);

// tap preloads @tapjs/processinfo into each test file's process and, through a hook on
// child_process and NODE_OPTIONS, into every process the test starts: servers, CLIs and each
// worker. It records the files a process loads, for coverage and `tap --changed`, neither used
// here (coverage is off), and its module hook made a worker's start cost 0.4 CPU-s instead of
// 0.15: about a third of what the suite spends. The test's own process keeps it; the processes
// it starts run as a user's would.
untrackChildProcesses();

// tap turns source maps on in each test process (--enable-source-maps), and Node then reads and
// parses the map of every module that names one as it loads: tap's own ~100 modules, dist/'s. It
// was the largest single part of a test process's start (about a tenth of the suite's CPU with
// tap's unused plugins, trimmed in package.json). A failure still names its test file's line (Node
// strips types in place); a frame in dist/ names the built .js line.
process.setSourceMapsEnabled(false);

function untrackChildProcesses() {
  const spawnHooks = globalThis[Symbol.for('process-on-spawn@*:singletonId')];
  if (spawnHooks) spawnHooks.listeners = [];
  const options = (process.env.NODE_OPTIONS ?? '')
    .replace(/"?--(?:import|loader)=\S*(?:@tapjs[/\\]processinfo|skip-processinfo\.mjs)\S*/g, '')
    .trim();
  if (options === '') delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = options;
}

nodeModule.registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (err) {
      const fromSource = context.parentURL?.endsWith('.ts') && specifier.startsWith('.') && specifier.endsWith('.js');
      if (!fromSource || err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
      return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
    }
  },
});

// Node.js 22's type stripping is slow, and kept on disk (test/stripped-ts.mjs).
if (keepsStripped) {
  const dir = strippedDir(process.env.NODE_COMPILE_CACHE);
  nodeModule.registerHooks({
    load(url, context, nextLoad) {
      if (!url.startsWith('file:') || !url.endsWith('.ts')) return nextLoad(url, context);
      const source = strippedSource(dir, url, readFileSync(fileURLToPath(url), 'utf8'));
      return { format: 'module', source, shortCircuit: true };
    },
  });
}

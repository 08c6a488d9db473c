// Lets Node.js run the TypeScript tests as they are (tap's type-strip-only: Node strips the types,
// nothing compiles them). A .ts module imports its neighbours by the names they have once built
// (`./job-queue.js`, as NodeNext asks); when that file is not there, this loads the source beside it.
import * as nodeModule from 'node:module';
import { fileURLToPath } from 'node:url';
import { requireNodeForTests } from '../bin/require-node.js';

requireNodeForTests();

// Each test file is a process, and most start servers, workers and CLIs as processes of their own:
// Node's compile cache (V8's code for each module, kept under node_modules/.cache) spares every one
// of them compiling tap, fastify and the server again: about a third of a small file's CPU. The
// processes the tests start inherit it through the variable.
process.env.NODE_COMPILE_CACHE ??= fileURLToPath(new URL('../node_modules/.cache/tsserve-tests', import.meta.url));
nodeModule.enableCompileCache(process.env.NODE_COMPILE_CACHE);

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

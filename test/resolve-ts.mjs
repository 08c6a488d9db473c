// Lets Node.js run the TypeScript tests as they are (tap's type-strip-only: Node strips the types,
// nothing compiles them). A .ts module imports its neighbours by the names they have once built
// (`./job-queue.js`, as NodeNext asks); when that file is not there, this loads the source beside it.
import * as nodeModule from 'node:module';
import { requireNodeForTests } from '../bin/require-node.js';

requireNodeForTests();

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

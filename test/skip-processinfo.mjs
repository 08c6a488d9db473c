// npm test puts this first in NODE_OPTIONS, ahead of the --import that tap gives each test file's
// process for @tapjs/processinfo. That module records every file a process loads, for coverage and
// `tap --changed`, neither used here (coverage is off). On Node.js 22 it does so through a loader
// thread of its own (module.register), which cost a test file's process 0.3 CPU-s of its 0.55,
// about a fifth of the suite's CPU; on 24 a load hook, 0.08 CPU-s. Here its import resolves to an
// empty module. (resolve-ts.mjs, tap's node-arg, drops this preload from what the processes the
// tests start inherit.)
import * as nodeModule from 'node:module';

nodeModule.registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    if (!/[/\\]@tapjs[/\\]processinfo[/\\]dist[/\\]esm[/\\]import\.mjs$/.test(resolved.url)) return resolved;
    return { url: 'data:text/javascript,', shortCircuit: true };
  },
});

import * as nodeModule from 'node:module';
const EMPTY = 'data:text/javascript,';
nodeModule.registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    return resolved.url.includes('/@tapjs/processinfo/dist/esm/import.mjs') ? { url: EMPTY, shortCircuit: true } : resolved;
  },
});

#!/usr/bin/env node
// Before anything that could run a garbage collection: nextTick's fast path (src/tick-maps.ts).
import '../dist/src/tick-maps.js';
import { requireNode } from './require-node.js';
// Next, before the rest: a SIGTERM that comes while the rest loads is kept for the stop (cli/stop-signal.ts).
import '../dist/src/cli/stop-signal.js';
import { compileCache } from './compile-cache.js';

requireNode();
compileCache();
const { main } = await import('../dist/src/cli/tsserve.js');
await main(process.argv.slice(2));

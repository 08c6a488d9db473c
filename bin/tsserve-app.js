#!/usr/bin/env node
import { requireNode } from './require-node.js';
// First of all: a SIGTERM that comes while the rest loads is kept for the stop (cli/stop-signal.ts).
import '../dist/src/cli/stop-signal.js';
// Then, before anything that could run a garbage collection: nextTick's fast path (src/tick-maps.ts).
import '../dist/src/tick-maps.js';

requireNode('tsserve-app');
await import('../dist/src/cli/app.js');

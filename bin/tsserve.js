#!/usr/bin/env node
import { requireNode } from './require-node.js';

requireNode();
const { main } = await import('../dist/src/cli/tsserve.js');
await main(process.argv.slice(2));

#!/usr/bin/env node
import { requireNode } from './require-node.js';

requireNode('tsserve-convert');
const { main } = await import('../dist/src/cli/convert.js');
await main(process.argv.slice(2));

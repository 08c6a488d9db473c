#!/usr/bin/env node
import { requireNode } from './require-node.js';

requireNode('tsserve-archiver');
const { main } = await import('../dist/src/cli/archiver.js');
main(process.argv.slice(2));

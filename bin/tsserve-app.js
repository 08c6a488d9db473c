#!/usr/bin/env node
import { requireNode } from './require-node.js';

requireNode('tsserve-app');
await import('../dist/src/cli/app.js');

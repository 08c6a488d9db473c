#!/usr/bin/env node
import { main } from '../dist/src/cli/tsserve.js';

await main(process.argv.slice(2));

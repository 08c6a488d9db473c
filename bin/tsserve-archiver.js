#!/usr/bin/env node
import { main } from '../dist/src/cli/archiver.js';

main(process.argv.slice(2));

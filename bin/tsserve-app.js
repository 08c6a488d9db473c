#!/usr/bin/env node
import '../dist/src/cli/app.js';

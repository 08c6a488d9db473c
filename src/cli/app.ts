/**
 * @module cli/app
 * `tsserve-app --port 5000 --inference URL --management URL --metrics URL [--key-file FILE]`:
 * the web app, in front of a running tsserve.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { createApp } from '../app/app.js';

const program = new Command('tsserve-app')
  .description('The web app: style transfer, classification, OCR and the models page, over a running tsserve')
  .option('--port <port>', 'port to listen on', '5000')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--inference <url>', 'tsserve inference API', 'http://127.0.0.1:8080')
  .option('--management <url>', 'tsserve management API', 'http://127.0.0.1:8081')
  .option('--metrics <url>', 'tsserve metrics API', 'http://127.0.0.1:8082')
  .option('--key-file <file>', "tsserve's key_file.json, when token authorization is on", 'key_file.json')
  .parse();

const opts = program.opts<{ port: string; host: string; inference: string; management: string; metrics: string; keyFile: string }>();
const keyFile = resolve(opts.keyFile);
const app = createApp({ inference: opts.inference, management: opts.management, metrics: opts.metrics, keyFile: existsSync(keyFile) ? keyFile : undefined });
const url = await app.listen({ port: Number(opts.port), host: opts.host });
console.log(`tsserve-app on ${url}, calling ${opts.inference}`);

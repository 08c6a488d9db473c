#!/usr/bin/env node
// What a refusal (503) costs tsserve in CPU against a bare node:http server writing the same bytes,
// side by side in one run: the focused form of bench/open-loop.mjs's `costs` line, which imports
// the measurements from here.
//
//   node bench/refusal-cost.mjs [--rates 6000,12000] [--seconds 6] [--rounds 3] [--set key=value ...]
//
// Serves model-store/mnist.mar as the README starts it (`tsserve --start`, default settings, a
// temporary folder), scales it to no workers so that every prediction is refused as a full queue
// refuses it, then for each round and rate offers --seconds of predictions at that fixed rate to
// tsserve and then to the bare server. Each line says the CPU per refusal of the server alone and
// of server and generator together (the generator shares the two cores), the refusals' p99, and
// tsserve's cost over the bare server's. `--set vmargs=--cpu-prof --cpu-prof-dir=/tmp/x` profiles
// the server (written when it stops).
import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { atFixedRate, cpuSeconds, percentile, sorted, userServer } from './lib.mjs';
import { RawClient, rawPost } from './raw-client.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The prediction every bench of the open loop sends: one mnist digit as PNG. */
export const BODY = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));

/**
 * CPU per request refused, at `rate` for `seconds`: of the server (`pid`) alone, and of it and this
 * generator together; and the refusals' p99 in ms.
 */
export async function refusalCost(refusedClient, pid, rate, seconds) {
  const before = { server: cpuSeconds(pid), generator: process.cpuUsage() };
  const times = [];
  const { calls } = await atFixedRate(rate, seconds, () => {
    const sent = performance.now();
    return refusedClient.send().then(
      ({ status }) => status === 503 && times.push(performance.now() - sent),
      () => undefined,
    );
  });
  await Promise.all(calls);
  const generator = process.cpuUsage(before.generator);
  const server = cpuSeconds(pid) - before.server;
  return {
    server: server / times.length,
    cpu: (server + (generator.user + generator.system) / 1e6) / times.length,
    p99: percentile(sorted(times), 99),
  };
}

/** refusalCost of a node:http server in a process of its own that answers every request with `body`, tsserve's 503 bytes. */
export async function bareRefusalCost(body, rate, seconds) {
  const source = `import { createServer } from 'node:http';
    const body = Buffer.from('${body.toString('base64')}', 'base64');
    const s = createServer((req, res) => { req.resume(); res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', 'content-length': body.length }); res.end(body); });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const bare = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise((resolve) => bare.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
    const origin = `http://127.0.0.1:${port}`;
    const bareClient = new RawClient(origin, rawPost(origin, '/predictions/mnist', BODY, 'image/png'));
    await Promise.all(Array.from({ length: 200 }, () => bareClient.send()));
    const cost = await refusalCost(bareClient, bare.pid, rate, seconds);
    bareClient.close();
    return cost;
  } finally {
    bare.kill();
  }
}

/** Scales mnist to no workers: from then on every prediction is refused. */
export function refuseEverything(management) {
  return fetch(`${management}/models/mnist?min_worker=0&max_worker=0&synchronous=true`, { method: 'PUT' });
}

async function main() {
  const { values: opts } = parseArgs({
    options: {
      rates: { type: 'string', default: '6000,12000' },
      seconds: { type: 'string', default: '6' },
      rounds: { type: 'string', default: '3' },
      set: { type: 'string', multiple: true, default: [] },
    },
  });
  const server = await userServer('tsserve-refusal-cost-', opts.set);
  copyFileSync(join(ROOT, 'model-store', 'mnist.mar'), join(server.store, 'mnist.mar'));
  const client = new RawClient(server.inference, rawPost(server.inference, '/predictions/mnist', BODY, 'image/png'));
  try {
    await server.start(['--models', 'mnist=mnist.mar']);
    await refuseEverything(server.management);
    const { body: refusal } = await client.send();
    // Warms the server's refusal path and this client's connections before anything is counted.
    await refusalCost(client, server.pid(), 4000, 2);
    const us = (seconds) => String(Math.round(seconds * 1e6)).padStart(4);
    console.log('round  rate/s  server us: tsserve bare  ratio   server+generator us: tsserve bare  ratio   p99 ms: tsserve bare');
    for (let round = 1; round <= Number(opts.rounds); round++) {
      for (const rate of opts.rates.split(',').map(Number)) {
        const ts = await refusalCost(client, server.pid(), rate, Number(opts.seconds));
        const bare = await bareRefusalCost(refusal, rate, Number(opts.seconds));
        console.log(
          `${String(round).padStart(5)}  ${String(rate).padStart(6)}  ${us(ts.server).padStart(17)} ${us(bare.server)}  ${(ts.server / bare.server).toFixed(2)}x` +
            `  ${us(ts.cpu).padStart(30)} ${us(bare.cpu)}  ${(ts.cpu / bare.cpu).toFixed(2)}x  ${ts.p99.toFixed(1).padStart(15)} ${bare.p99.toFixed(1)}`,
        );
      }
    }
  } finally {
    client.close();
    await server.stop();
    server.remove();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();

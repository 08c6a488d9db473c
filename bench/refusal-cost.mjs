#!/usr/bin/env node
// What a refusal (503) costs tsserve in CPU against a bare node:http server writing the same bytes,
// side by side in one run: the focused form of bench/open-loop.mjs's `costs` line, which imports
// the measurements from here.
//
//   node bench/refusal-cost.mjs [--rates 6000,12000] [--seconds 6] [--rounds 3] [--before DIR] [--set key=value ...]
//
// Serves model-store/mnist.mar as the README starts it (`tsserve --start`, default settings, a
// temporary folder), scales it to no workers so that every prediction is refused as a full queue
// refuses it, then for each round and rate offers --seconds of predictions at that fixed rate to
// each server in turn, the order turned by one each round. The servers: tsserve; with --before, the
// tsserve of another checkout (its dist/ built), for a before and after in one run; and two bare
// node:http servers, each a process of its own, started and warmed once as tsserve is, keeping
// idle connections as long as tsserve does (65 s): `bare` writes tsserve's body under three
// headers, `same` writes the very answer tsserve writes, its TorchServe headers (Pragma,
// Cache-Control, Expires, a new x-request-id per answer) and all. `same` is the fair floor: those
// headers are the contract, and the bare server paid for none of them. Neither writes an access
// log, which tsserve must (TorchServe logs every request): that is tsserve's to make cheap. Each
// line says the CPU per refusal of each server alone, tsserve's over `same`'s and `bare`'s, the
// same with the generator's CPU counted (it shares the two cores), and the refusals' p99.
// `--set vmargs=--cpu-prof --cpu-prof-dir=/tmp/x` profiles the server (written when it stops).
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

/**
 * A node:http server in a process of its own that answers every request with `body`: under
 * tsserve's three headers of a refusal when `headers` is undefined, else under `headers` (name and
 * value pairs, as tsserve writes them) and a new x-request-id each time, as tsserve does. It keeps
 * an idle connection 65 s, as tsserve's listeners do. Resolves with its pid, a client, and stop().
 */
export async function bareServer(body, headers) {
  const written = headers
    ? `['x-request-id', randomUUID(), ...${JSON.stringify(headers.flat())}]`
    : `{ 'content-type': 'application/json', 'retry-after': '1', 'content-length': body.length }`;
  const source = `import { createServer } from 'node:http';
    import { randomUUID } from 'node:crypto';
    const body = Buffer.from('${body.toString('base64')}', 'base64');
    const s = createServer((req, res) => { req.resume(); res.writeHead(503, ${written}); res.end(body); });
    s.keepAliveTimeout = 65000;
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const bare = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => bare.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  const origin = `http://127.0.0.1:${port}`;
  const client = new RawClient(origin, rawPost(origin, '/predictions/mnist', BODY, 'image/png'));
  return {
    pid: bare.pid,
    client,
    stop: () => {
      client.close();
      bare.kill();
    },
  };
}

/** refusalCost of a bareServer(body) of its own, warmed by 200 requests. */
export async function bareRefusalCost(body, rate, seconds) {
  const bare = await bareServer(body);
  try {
    await Promise.all(Array.from({ length: 200 }, () => bare.client.send()));
    return await refusalCost(bare.client, bare.pid, rate, seconds);
  } finally {
    bare.stop();
  }
}

/** The headers of tsserve's refusal, as name and value pairs, but those Node writes itself and x-request-id. */
async function refusalHeaders(inference) {
  const res = await fetch(`${inference}/predictions/mnist`, { method: 'POST', body: BODY, headers: { 'content-type': 'image/png' } });
  await res.arrayBuffer();
  const own = new Set(['date', 'connection', 'keep-alive', 'x-request-id', 'transfer-encoding']);
  return [...res.headers].filter(([name]) => !own.has(name));
}

/** Scales mnist to no workers: from then on every prediction is refused. */
export function refuseEverything(management) {
  return fetch(`${management}/models/mnist?min_worker=0&max_worker=0&synchronous=true`, { method: 'PUT' });
}

/** A tsserve of the checkout at `root` serving mnist, scaled to refuse everything. */
async function refusingTsserve(root, set) {
  const server = await userServer('tsserve-refusal-cost-', set, { root });
  copyFileSync(join(ROOT, 'model-store', 'mnist.mar'), join(server.store, 'mnist.mar'));
  await server.start(['--models', 'mnist=mnist.mar']);
  await refuseEverything(server.management);
  const client = new RawClient(server.inference, rawPost(server.inference, '/predictions/mnist', BODY, 'image/png'));
  return {
    server,
    client,
    pid: server.pid(),
    stop: async () => {
      client.close();
      await server.stop();
      server.remove();
    },
  };
}

async function main() {
  const { values: opts } = parseArgs({
    options: {
      rates: { type: 'string', default: '6000,12000' },
      seconds: { type: 'string', default: '6' },
      rounds: { type: 'string', default: '3' },
      before: { type: 'string' },
      set: { type: 'string', multiple: true, default: [] },
    },
  });
  const servers = [];
  try {
    const tsserve = await refusingTsserve(join(ROOT, '/'), opts.set);
    servers.push({ name: 'tsserve', ...tsserve });
    if (opts.before) servers.push({ name: 'before', ...(await refusingTsserve(join(opts.before, '/'), opts.set)) });
    const { body: refusal } = await tsserve.client.send();
    servers.push({ name: 'same', ...(await bareServer(refusal, await refusalHeaders(tsserve.server.inference))) });
    servers.push({ name: 'bare', ...(await bareServer(refusal)) });
    // Warms each server's refusal path and its client's connections before anything is counted.
    for (const s of servers) await refusalCost(s.client, s.pid, 4000, 2);
    const us = (seconds) => String(Math.round(seconds * 1e6)).padStart(4);
    const names = servers.map((s) => s.name.padStart(7)).join(' ');
    const versus = servers.filter((s) => s.name === 'tsserve' || s.name === 'before').flatMap((s) => [`${s.name}/same`, `${s.name}/bare`]);
    console.log(`round  rate/s  server us: ${names}  ${versus.map((v) => v.padStart(12)).join(' ')}  with the generator: tsserve/same  p99 ms: ${names}`);
    const rates = opts.rates.split(',').map(Number);
    for (let round = 1; round <= Number(opts.rounds); round++) {
      for (const rate of rates) {
        const cost = {};
        // Each round starts with the next server: none is always measured first, or right after another.
        for (let i = 0; i < servers.length; i++) {
          const s = servers[(round - 1 + i) % servers.length];
          cost[s.name] = await refusalCost(s.client, s.pid, rate, Number(opts.seconds));
        }
        const ratio = (a, b) => `${(cost[a].server / cost[b].server).toFixed(2)}x`.padStart(12);
        console.log(
          `${String(round).padStart(5)}  ${String(rate).padStart(6)}  ${servers
            .map((s) => us(cost[s.name].server).padStart(7))
            .join(' ')
            .padStart(names.length + 11)}` +
            `  ${versus.map((v) => ratio(...v.split('/'))).join(' ')}` +
            `  ${`${(cost.tsserve.cpu / cost.same.cpu).toFixed(2)}x`.padStart(33)}  ${servers
              .map((s) => cost[s.name].p99.toFixed(1).padStart(7))
              .join(' ')
              .padStart(names.length + 8)}`,
        );
      }
    }
  } finally {
    for (const s of servers) await s.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();

#!/usr/bin/env node
// What a refusal (503) costs tsserve in CPU against a bare node:http server writing the same bytes,
// side by side in one run: the focused form of bench/open-loop.mjs's `costs` line, which imports
// the measurements from here.
//
//   node bench/refusal-cost.mjs [--rates 6000,12000] [--seconds 6] [--rounds 3] [--before DIR] [--set key=value ...] [--profile DIR]
//
// Serves model-store/mnist.mar as the README starts it (`tsserve --start`, default settings, a
// temporary folder), scales it to no workers so that every prediction is refused as a full queue
// refuses it, then for each round and rate offers --seconds of predictions at that fixed rate to
// each server in turn, the order turned by one each round. The servers: tsserve; with --before, the
// tsserve of another checkout (its dist/ built), for a before and after in one run; and three bare
// node:http servers, each a process of its own, started and warmed once as tsserve is, keeping
// idle connections as long as tsserve does (65 s): `bare` writes tsserve's body under three
// headers, `same` writes the very answer tsserve writes, its TorchServe headers (Pragma,
// Cache-Control, Expires, a new x-request-id per answer) and all, and `logged` does what `same`
// does and writes each request's access line as tsserve must (TorchServe logs every request; the
// line's format, its time formatted once a second, and writes of 4 KB, as tsserve's). Until
// 2026-12-07 no bare server logged: `same` was the floor the target was measured against, and it
// skipped part of the contract tsserve pays for. `logged` is the fair floor (the contract's bytes
// and its log line), `same` the floor without the log. Each line says the CPU per refusal of each
// server alone, tsserve's over each floor's, tsserve's over `same`'s with the generator's CPU
// counted (it shares the two cores), the refusals' p99, and each server's minor page faults per
// refusal (a heap that grows, or pages handed back and touched again: work no bare server does).
// --profile DIR writes a CPU profile of each server (--cpu-prof) to DIR/<name>/ when it stops.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { atFixedRate, cpuSeconds, minorFaults, percentile, sorted, userServer } from './lib.mjs';
import { RawClient, rawPost } from './raw-client.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The prediction every bench of the open loop sends: one mnist digit as PNG. */
export const BODY = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));

/**
 * CPU per request refused, at `rate` for `seconds`: of the server (`pid`) alone, and of it and this
 * generator together; the refusals' p99 in ms; and the server's minor page faults per refusal.
 */
export async function refusalCost(refusedClient, pid, rate, seconds) {
  const before = { server: cpuSeconds(pid), generator: process.cpuUsage(), faults: minorFaults(pid) };
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
    faults: (minorFaults(pid) - before.faults) / times.length,
    server: server / times.length,
    cpu: (server + (generator.user + generator.system) / 1e6) / times.length,
    p99: percentile(sorted(times), 99),
  };
}

/**
 * A node:http server in a process of its own that answers every request with `body`: under
 * tsserve's three headers of a refusal when `headers` is undefined, else under `headers` (name and
 * value pairs, as tsserve writes them) and a new x-request-id each time, as tsserve does. It keeps
 * an idle connection 65 s, as tsserve's listeners do. With `accessLog`, it also writes each
 * request's access line as tsserve's access_log.log has it (a log4j time, the client, the request
 * line, the status and the milliseconds), gathered into writes of 4 KB and at least one a second,
 * as tsserve writes its own, to a file in a temporary folder. Resolves with its pid, a client, and
 * stop().
 */
export async function bareServer(body, { headers, accessLog = false, nodeArgs = [] } = {}) {
  const written = headers
    ? `['x-request-id', randomUUID(), ...${JSON.stringify(headers.flat())}]`
    : `{ 'content-type': 'application/json', 'retry-after': '1', 'content-length': body.length }`;
  const logDir = accessLog ? mkdtempSync(join(tmpdir(), 'tsserve-refusal-cost-log-')) : undefined;
  const logged = logDir
    ? `const line = \`\${timestamp(Date.now())} - /\${req.socket.remoteAddress}:\${req.socket.remotePort} "\${req.method} \${req.url} HTTP/\${req.httpVersion}" 503 \${Math.round(performance.now() - began)}\\n\`;
       queued.push(line);
       queuedBytes += line.length;
       if (queuedBytes >= 4096) flush();`
    : '';
  const source = `import { createServer } from 'node:http';
    import { randomUUID } from 'node:crypto';
    import { openSync, write } from 'node:fs';
    const body = Buffer.from('${body.toString('base64')}', 'base64');
    const fd = ${logDir ? `openSync(${JSON.stringify(join(logDir ?? '', 'access_log.log'))}, 'a')` : 'undefined'};
    let queued = [];
    let queuedBytes = 0;
    let writing = false;
    const flush = () => {
      if (writing || queued.length === 0) return;
      const text = queued.join('');
      queued = [];
      queuedBytes = 0;
      writing = true;
      write(fd, text, () => { writing = false; if (queuedBytes >= 4096) flush(); });
    };
    if (fd !== undefined) setInterval(flush, 1000).unref();
    let second = Number.NaN;
    let stamp = '';
    const timestamp = (ms) => {
      const s = Math.floor(ms / 1000);
      if (s !== second) { second = s; stamp = new Date(s * 1000).toISOString().slice(0, 19).replace('Z', '') + ','; }
      return stamp + String(ms - s * 1000).padStart(3, '0');
    };
    const s = createServer((req, res) => {
      ${logDir ? 'const began = performance.now();' : ''}
      req.resume();
      res.writeHead(503, ${written});
      res.end(body);
      ${logged}
    });
    s.keepAliveTimeout = 65000;
    process.on('SIGTERM', () => process.exit(0));
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const bare = spawn(process.execPath, [...nodeArgs, '--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => bare.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  const origin = `http://127.0.0.1:${port}`;
  const client = new RawClient(origin, rawPost(origin, '/predictions/mnist', BODY, 'image/png'));
  return {
    pid: bare.pid,
    client,
    stop: () => {
      client.close();
      bare.once('exit', () => logDir && rmSync(logDir, { recursive: true, force: true }));
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
  // Each checkout's own archive: its example handler may use what only its tsserve exports.
  copyFileSync(join(root, 'model-store', 'mnist.mar'), join(server.store, 'mnist.mar'));
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
      profile: { type: 'string' },
    },
  });
  // --profile DIR: a CPU profile of each server, in DIR/<name>/, written as it stops.
  const profiled = (name) => (opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(opts.profile, name)}`] : []);
  const set = (name) => (opts.profile ? [...opts.set, `vmargs=${profiled(name).join(' ')}`] : opts.set);
  const servers = [];
  try {
    const tsserve = await refusingTsserve(join(ROOT, '/'), set('tsserve'));
    servers.push({ name: 'tsserve', ...tsserve });
    if (opts.before) servers.push({ name: 'before', ...(await refusingTsserve(join(opts.before, '/'), set('before'))) });
    const { body: refusal } = await tsserve.client.send();
    const headers = await refusalHeaders(tsserve.server.inference);
    servers.push({ name: 'logged', ...(await bareServer(refusal, { headers, accessLog: true, nodeArgs: profiled('logged') })) });
    servers.push({ name: 'same', ...(await bareServer(refusal, { headers, nodeArgs: profiled('same') })) });
    servers.push({ name: 'bare', ...(await bareServer(refusal, { nodeArgs: profiled('bare') })) });
    // Warms each server's refusal path and its client's connections before anything is counted.
    for (const s of servers) await refusalCost(s.client, s.pid, 4000, 2);
    const us = (seconds) => String(Math.round(seconds * 1e6)).padStart(4);
    const names = servers.map((s) => s.name.padStart(7)).join(' ');
    const versus = servers.filter((s) => s.name === 'tsserve' || s.name === 'before').flatMap((s) => [`${s.name}/logged`, `${s.name}/same`, `${s.name}/bare`]);
    console.log(
      `round  rate/s  server us: ${names}  ${versus.map((v) => v.padStart(14)).join(' ')}  with the generator: tsserve/same  p99 ms: ${names}  faults/refusal: ${names}`,
    );
    const rates = opts.rates.split(',').map(Number);
    for (let round = 1; round <= Number(opts.rounds); round++) {
      for (const rate of rates) {
        const cost = {};
        // Each round starts with the next server: none is always measured first, or right after another.
        for (let i = 0; i < servers.length; i++) {
          const s = servers[(round - 1 + i) % servers.length];
          cost[s.name] = await refusalCost(s.client, s.pid, rate, Number(opts.seconds));
        }
        const ratio = (a, b) => `${(cost[a].server / cost[b].server).toFixed(2)}x`.padStart(14);
        console.log(
          `${String(round).padStart(5)}  ${String(rate).padStart(6)}  ${servers
            .map((s) => us(cost[s.name].server).padStart(7))
            .join(' ')
            .padStart(names.length + 11)}` +
            `  ${versus.map((v) => ratio(...v.split('/'))).join(' ')}` +
            `  ${`${(cost.tsserve.cpu / cost.same.cpu).toFixed(2)}x`.padStart(33)}  ${servers
              .map((s) => cost[s.name].p99.toFixed(1).padStart(7))
              .join(' ')
              .padStart(names.length + 8)}  ${servers
              .map((s) => cost[s.name].faults.toFixed(3).padStart(7))
              .join(' ')
              .padStart(names.length + 16)}`,
        );
      }
    }
  } finally {
    for (const s of servers) await s.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();

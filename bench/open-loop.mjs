#!/usr/bin/env node
// Overload and cold start as users meet them, with an open-loop generator: requests arrive at a
// fixed rate whatever the server does (no client waits for an answer before sending the next, no
// retries), which is what many independent clients do and what a closed loop (autocannon, wrk)
// hides: it slows down with the server.
//
//   node bench/open-loop.mjs [--seconds 10] [--loads 1,1.5,3] [--cold 0.8] [--cold-seconds 8]
//
// Serves model-store/mnist.mar as the README starts it (`tsserve --start`, default settings) from
// a temporary folder on free 127.0.0.1 ports. Then:
//   capacity  a closed loop of 32 connections for --seconds: the answers per second it gets;
//   loads     for each multiple of that capacity, --seconds of arrivals at that fixed rate:
//             answered/s (goodput), refused (503) and failed, accepted p50/p99, the refusals'
//             p99, the server's memory (process tree RSS) at the start and the end;
//   cold      the server stopped and started again; as soon as `tsserve --start` returns, --cold
//             times the capacity for --cold-seconds: the share refused, p99, and per second.
// The generator is undici on the same machine (its CPU is shared with the server, as it is on a
// 2-core machine; the report says how far behind schedule it fell). Every load is bounded in
// time; requests still open 30 s after the last arrival count as failed.
import { copyFileSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { treeRssMb, userServer } from './lib.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    loads: { type: 'string', default: '1,1.5,3' },
    cold: { type: 'string', default: '0.8' },
    'cold-seconds': { type: 'string', default: '8' },
  },
});
const SECONDS = Number(opts.seconds);
const BODY = readFileSync(join(ROOT, 'examples/mnist/digits/7_0.png'));

const server = await userServer('tsserve-open-loop-');
copyFileSync(join(ROOT, 'model-store', 'mnist.mar'), join(server.store, 'mnist.mar'));
const origin = server.inference;
const pool = new Pool(origin, { connections: 1024, pipelining: 1, keepAliveTimeout: 60_000 });

try {
  await start();
  await offer(200, 2, () => undefined); // warms the client's connections and the server's JIT
  const capacity = await closedLoopCapacity(32, SECONDS);
  console.log(`capacity (closed loop, 32 connections, ${SECONDS} s): ${capacity.toFixed(0)} answers/s`);
  console.log('load   offered/s  answered/s  goodput  refused  failed  p50 ms  p99 ms  p99(at capacity) x  refusal p99 ms  RSS MB start->end  late ms');
  let p99AtCapacity;
  for (const multiple of opts.loads.split(',').map(Number)) {
    const rss = [serverRss()];
    const r = await offer(capacity * multiple, SECONDS, () => undefined);
    rss.push(serverRss());
    p99AtCapacity ??= r.p99;
    console.log([
      `${multiple}x`.padEnd(6), String(Math.round(r.offered)).padStart(9), String(Math.round(r.answeredPerSecond)).padStart(11),
      `${((100 * r.answeredPerSecond) / capacity).toFixed(0)}%`.padStart(8), `${r.refusedShare.toFixed(1)}%`.padStart(8),
      String(r.failed).padStart(7), r.p50.toFixed(1).padStart(7), r.p99.toFixed(1).padStart(7),
      (r.p99 / p99AtCapacity).toFixed(1).padStart(20), r.refusalP99.toFixed(1).padStart(15),
      `${rss[0]}->${rss[1]}`.padStart(19), r.lateMs.toFixed(0).padStart(8),
    ].join(' '));
    if (r.reasons) console.log(`       not answered 200: ${r.reasons}`);
  }

  await server.stop();
  await pool.close();
  const cold = new Pool(origin, { connections: 1024, pipelining: 1, keepAliveTimeout: 60_000 });
  await start();
  const perSecond = [];
  const r = await offer(capacity * Number(opts.cold), Number(opts['cold-seconds']), (second, status) => {
    perSecond[second] ??= { ok: 0, refused: 0 };
    if (status === 200) perSecond[second].ok++;
    else perSecond[second].refused++;
  }, cold);
  console.log(`cold start: ${opts.cold}x capacity (${Math.round(r.offered)}/s) from the moment tsserve --start returned, ${opts['cold-seconds']} s: `
    + `refused ${r.refusedShare.toFixed(2)}%, failed ${r.failed}, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms`);
  console.log(`  per second (answered/refused): ${perSecond.map((s) => `${s?.ok ?? 0}/${s?.refused ?? 0}`).join(' ')}`);
  if (r.reasons) console.log(`  not answered 200: ${r.reasons}`);
  await cold.close();
} finally {
  await server.stop();
  server.remove();
}

function start() {
  return server.start(['--models', 'mnist=mnist.mar']);
}

/** RSS of the running server and its workers. */
function serverRss() {
  return treeRssMb(server.pid());
}

/** Answers per second of `connections` clients that each send as soon as their answer is back. */
async function closedLoopCapacity(connections, seconds) {
  const until = performance.now() + seconds * 1000;
  let answered = 0;
  await Promise.all(Array.from({ length: connections }, async () => {
    while (performance.now() < until) {
      const { statusCode, body } = await pool.request({ path: '/predictions/mnist', method: 'POST', body: BODY, headers: { 'content-type': 'image/png' } });
      await body.dump();
      if (statusCode === 200) answered++;
    }
  }));
  return answered / seconds;
}

/**
 * Sends requests at `rate` per second for `seconds`, each at its scheduled time whatever earlier
 * ones do, and waits (at most 30 s) for the answers.
 */
async function offer(rate, seconds, onAnswer, client = pool) {
  const total = Math.round(rate * seconds);
  const began = performance.now();
  const accepted = [];
  const refusals = [];
  let failed = 0;
  let late = 0;
  const reasons = new Map();
  const inFlight = [];
  for (let i = 0; i < total; i++) {
    const due = began + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    else late = Math.max(late, -wait);
    const sent = performance.now();
    inFlight.push(client.request({ path: '/predictions/mnist', method: 'POST', body: BODY, headers: { 'content-type': 'image/png' }, headersTimeout: 30_000, bodyTimeout: 30_000 })
      .then(async ({ statusCode, body }) => {
        const text = statusCode === 200 ? (await body.dump(), '') : await body.text();
        const ms = performance.now() - sent;
        if (statusCode === 200) accepted.push(ms);
        else if (statusCode === 503) refusals.push(ms);
        else failed++;
        if (statusCode !== 200) {
          const why = `${statusCode} ${(/"message": "([^"]*)"/.exec(text)?.[1] ?? text).slice(0, 60)}`;
          reasons.set(why, (reasons.get(why) ?? 0) + 1);
        }
        onAnswer(Math.floor((sent - began) / 1000), statusCode);
      }, () => {
        failed++;
      }));
  }
  await Promise.all(inFlight);
  const sorted = (values) => [...values].sort((a, b) => a - b);
  const pct = (values, p) => (values.length === 0 ? 0 : values[Math.min(values.length - 1, Math.floor((p / 100) * values.length))]);
  const acceptedSorted = sorted(accepted);
  return {
    offered: rate,
    answeredPerSecond: accepted.length / seconds,
    refusedShare: (100 * refusals.length) / total,
    failed,
    p50: pct(acceptedSorted, 50),
    p99: pct(acceptedSorted, 99),
    refusalP99: pct(sorted(refusals), 99),
    lateMs: late,
    reasons: [...reasons].map(([why, n]) => `${n} x ${why}`).join('; '),
  };
}

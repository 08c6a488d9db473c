#!/usr/bin/env node
// Overload and cold start as users meet them, with an open-loop generator: requests arrive at a
// fixed rate whatever the server does (no client waits for an answer before sending the next, no
// retries), which is what many independent clients do and what a closed loop (autocannon, wrk)
// hides: it slows down with the server.
//
//   node bench/open-loop.mjs [--seconds 20] [--loads 1,1.5,3] [--cold 0.8] [--cold-seconds 8] [--cold-runs 1] [--set key=value ...]
//
// Serves model-store/mnist.mar as the README starts it (`tsserve --start`, default settings) from
// a temporary folder on free 127.0.0.1 ports (`--set` adds a line to its config.properties, for
// comparing a setting with its default). Then:
//   capacity  a closed loop of 64 connections for --seconds: the answers per second it gets (with
//             fewer, each waits out the whole round trip and the server idles between batches),
//             measured again right before each load: on this shared machine it moved by a third
//             within minutes, and a load is a multiple of what the server could do then;
//   loads     for each multiple of that capacity, --seconds of arrivals at that fixed rate:
//             answered/s (goodput), refused (503) and failed, accepted p50/p99, the refusals'
//             p99, the server's memory (process tree RSS) at the start and the end, and how long
//             after the last arrival the last answer came (`drain`). Goodput is the answers over
//             the time from the first arrival to the last answer, not over --seconds: a server
//             that falls behind answers for seconds after the arrivals stop, and counting those
//             answers against --seconds showed goodput above 100% that no longer load could keep;
//   costs     the CPU an answer takes (server, workers and generator, at 1x) and a refusal takes
//             (the model scaled to no workers; and a bare node:http server's 503, the floor), and
//             the goodput past capacity that those costs leave possible on these cores at all;
//   cold      the server stopped and started again; as soon as `tsserve --start` returns, --cold
//             times the capacity last measured for --cold-seconds: the share refused, p99, and per second;
//             --cold-runs times, each after a stop and a start.
// The generator runs on the same machine and shares its two cores with the server; it is a lean
// client of raw sockets (raw-client.mjs) so that it takes as little of them as it can, and the
// report says what it took (`cpu`: cores used by the server's main process, its workers and the
// generator over the load) and how far behind schedule it fell. Every load is bounded in time;
// requests still open 30 s after the last arrival count as failed.
import { copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { atFixedRate, childPids, cpuSeconds, percentile, sorted, treeRssMb, userServer } from './lib.mjs';
import { RawClient, rawPost } from './raw-client.mjs';
import { BODY, bareRefusalCost, refusalCost, refuseEverything } from './refusal-cost.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    loads: { type: 'string', default: '1,1.5,3' },
    cold: { type: 'string', default: '0.8' },
    'cold-seconds': { type: 'string', default: '8' },
    'cold-runs': { type: 'string', default: '1' },
    set: { type: 'string', multiple: true, default: [] },
  },
});
const SECONDS = Number(opts.seconds);
const LOADS = opts.loads.split(',').map(Number);
const CAPACITY_CONNECTIONS = 64;

const server = await userServer('tsserve-open-loop-', opts.set);
if (opts.set.length > 0) console.log(`config.properties adds: ${opts.set.join(', ')}`);
copyFileSync(join(ROOT, 'model-store', 'mnist.mar'), join(server.store, 'mnist.mar'));
const origin = server.inference;
const REQUEST = rawPost(origin, '/predictions/mnist', BODY, 'image/png');
let client = new RawClient(origin, REQUEST);

try {
  await start();
  await offer(200, 2, () => undefined); // warms the client's connections and the server's JIT
  console.log(`capacity: a closed loop of ${CAPACITY_CONNECTIONS} connections for ${SECONDS} s right before each load; goodput is answered/s against it`);
  console.log(
    'load  capacity/s  offered/s  answered/s  goodput  refused  failed  p50 ms  p99 ms  p99(at capacity) x  refusal p99 ms  drain s  ping p50/max ms  RSS MB start->end  late ms  cpu main/workers/generator',
  );
  let p99AtCapacity;
  let capacity;
  let answerCost;
  for (const multiple of LOADS) {
    capacity = await closedLoopCapacity(CAPACITY_CONNECTIONS, SECONDS);
    const rss = [serverRss()];
    const cpu = cpuMeter();
    const r = await offer(capacity * multiple, SECONDS, () => undefined);
    const used = cpu();
    rss.push(serverRss());
    p99AtCapacity ??= r.p99;
    answerCost ??= (used.main + used.workers + used.generator) / r.answeredPerSecond;
    console.log(
      [
        `${multiple}x`.padEnd(5),
        String(Math.round(capacity)).padStart(10),
        String(Math.round(r.offered)).padStart(10),
        String(Math.round(r.answeredPerSecond)).padStart(11),
        `${((100 * r.answeredPerSecond) / capacity).toFixed(0)}%`.padStart(8),
        `${r.refusedShare.toFixed(1)}%`.padStart(8),
        String(r.failed).padStart(7),
        r.p50.toFixed(1).padStart(7),
        r.p99.toFixed(1).padStart(7),
        (r.p99 / p99AtCapacity).toFixed(1).padStart(20),
        r.refusalP99.toFixed(1).padStart(15),
        r.drainSeconds.toFixed(1).padStart(8),
        `${r.ping.p50.toFixed(1)}/${r.ping.max.toFixed(0)}`.padStart(16),
        `${rss[0]}->${rss[1]}`.padStart(19),
        r.lateMs.toFixed(0).padStart(8),
        `  ${used.main.toFixed(2)}/${used.workers.toFixed(2)}/${used.generator.toFixed(2)}`,
      ].join(' '),
    );
    if (r.reasons) console.log(`       not answered 200: ${r.reasons}`);
  }

  await reportCosts(answerCost, capacity);

  for (let run = 1; run <= Number(opts['cold-runs']); run++) await coldStart(capacity * Number(opts.cold), run);
} finally {
  client.close();
  await server.stop();
  server.remove();
}

/**
 * Stops the server and starts it again; as soon as `tsserve --start` returns, offers `rate` for
 * --cold-seconds on new connections and says what share was refused, and when.
 */
async function coldStart(rate, run) {
  await server.stop();
  client.close();
  client = new RawClient(origin, REQUEST);
  await start();
  const perSecond = [];
  const refusedPerTenth = Array.from({ length: 20 }, () => 0);
  const r = await offer(rate, Number(opts['cold-seconds']), (offsetMs, status) => {
    const second = Math.floor(offsetMs / 1000);
    perSecond[second] ??= { ok: 0, refused: 0 };
    if (status === 200) perSecond[second].ok++;
    else perSecond[second].refused++;
    if (status !== 200 && offsetMs < 2000) refusedPerTenth[Math.floor(offsetMs / 100)]++;
  });
  console.log(
    `cold start${opts['cold-runs'] === '1' ? '' : ` ${run}`}: ${opts.cold}x capacity (${Math.round(r.offered)}/s) from the moment tsserve --start returned, ${opts['cold-seconds']} s: ` +
      `refused ${r.refusedShare.toFixed(2)}%, failed ${r.failed}, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, /ping p50 ${r.ping.p50.toFixed(1)} max ${r.ping.max.toFixed(0)} ms`,
  );
  console.log(`  per second (answered/refused): ${perSecond.map((s) => `${s?.ok ?? 0}/${s?.refused ?? 0}`).join(' ')}`);
  console.log(`  refused per 100 ms of the first 2 s (by when sent): ${refusedPerTenth.join(' ')}`);
  if (r.reasons) console.log(`  not answered 200: ${r.reasons}`);
}

function start() {
  return server.start(['--models', 'mnist=mnist.mar']);
}

/**
 * What an answer and a refusal cost in CPU on this machine, server and generator together, and
 * what that allows. Past capacity the cores are all used: each refusal takes what `r / a` answers
 * would have used, so at k times capacity no server on these cores can answer more than
 * (a - k r) / (a - r) of capacity (a: an answer's cost at the first load, 1x by default; r: a
 * refusal's). A refusal costs less the more of them come at once (fewer wake-ups per request),
 * so r is measured at each load's own rate, for up to 8 s, with the model scaled to no workers
 * (every request refused as a full queue refuses it), and the same from a bare node:http server
 * that answers the same 503 bytes and does nothing else: the least any Node server pays. Their
 * p99 is what a refusal takes with no worker competing for the cores.
 */
async function reportCosts(answerCost, capacity) {
  const overloads = LOADS.filter((m) => m > 1);
  if (overloads.length === 0) return;
  const seconds = Math.min(SECONDS, 8);
  await refuseEverything(server.management);
  const { body: refusal } = await client.send();
  const us = (cores) => `${Math.round(cores * 1e6)} us`;
  const bound = (k, r) => `${Math.max(0, (100 * (answerCost - k * r)) / (answerCost - r)).toFixed(0)}%`;
  console.log(`cost of a request in CPU, server and generator together: an answer ${us(answerCost)} (at ${LOADS[0]}x); a refusal, at each load's rate:`);
  for (const k of overloads) {
    const tsserve = await refusalCost(client, server.pid(), capacity * k, seconds);
    const floor = await bareRefusalCost(refusal, capacity * k, seconds);
    console.log(
      `  ${k}x: ${us(tsserve.cpu)}, p99 ${tsserve.p99.toFixed(1)} ms (tsserve); ${us(floor.cpu)}, p99 ${floor.p99.toFixed(1)} ms (bare node:http); ` +
        `tsserve/bare ${(tsserve.cpu / floor.cpu).toFixed(2)}x (servers alone: ${us(tsserve.server)} / ${us(floor.server)}, ${(tsserve.server / floor.server).toFixed(2)}x). ` +
        `The most goodput these cores allow: ${bound(k, tsserve.cpu)} with tsserve's refusals, ${bound(k, floor.cpu)} with the bare server's`,
    );
  }
}

/** RSS of the running server and its workers. */
function serverRss() {
  return treeRssMb(server.pid());
}

/** Cores used from now until the returned function is called: the server's main process, its workers, this process. */
function cpuMeter() {
  const pid = server.pid();
  const workers = childPids(pid);
  const began = { at: performance.now(), main: cpuSeconds(pid), workers: workers.map(cpuSeconds), generator: process.cpuUsage() };
  return () => {
    const seconds = (performance.now() - began.at) / 1000;
    const generator = process.cpuUsage(began.generator);
    return {
      main: (cpuSeconds(pid) - began.main) / seconds,
      workers: workers.reduce((sum, w, i) => sum + cpuSeconds(w) - began.workers[i], 0) / seconds,
      generator: (generator.user + generator.system) / 1e6 / seconds,
    };
  };
}

/** Answers per second of `connections` clients that each send as soon as their answer is back. */
async function closedLoopCapacity(connections, seconds) {
  const until = performance.now() + seconds * 1000;
  let answered = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < until) {
        const { status } = await client.send();
        if (status === 200) answered++;
      }
    }),
  );
  return answered / seconds;
}

/**
 * Sends requests at `rate` per second for `seconds`, each at its scheduled time whatever earlier
 * ones do, and waits (at most 30 s) for the answers; `onAnswer(sentAtMs, status)` hears each, sentAtMs
 * counted from the first arrival.
 */
async function offer(rate, seconds, onAnswer) {
  const accepted = [];
  const refusals = [];
  let lastArrival = 0;
  let lastAnswer = 0;
  const reasons = new Map();
  const count = (why) => reasons.set(why, (reasons.get(why) ?? 0) + 1);
  const probe = pingProbe();
  const { began, calls, late } = await atFixedRate(rate, seconds, (offsetMs) => {
    const sent = performance.now();
    lastArrival = sent;
    return client.send().then(
      ({ status: statusCode, body }) => {
        const text = statusCode === 200 ? '' : body.toString('utf8');
        const now = performance.now();
        const ms = now - sent;
        lastAnswer = Math.max(lastAnswer, now);
        if (statusCode === 200) accepted.push(ms);
        else if (statusCode === 503) refusals.push(ms);
        if (statusCode !== 200) count(`${statusCode} ${(/"message": "((?:[^"\\]|\\.)*)"/.exec(text)?.[1] ?? text).slice(0, 60)}`);
        onAnswer(offsetMs, statusCode);
      },
      (err) => count(`no answer: ${err.message}`),
    );
  });
  await Promise.race([Promise.all(calls), new Promise((r) => setTimeout(r, 30_000).unref())]);
  const ping = await probe.stop();
  // Anything neither answered 200 nor refused failed: another status, a lost connection, no answer in 30 s.
  const total = calls.length;
  const failed = total - accepted.length - refusals.length;
  const acceptedSorted = sorted(accepted);
  return {
    offered: rate,
    answeredPerSecond: accepted.length / Math.max(seconds, (lastAnswer - began) / 1000),
    drainSeconds: Math.max(0, lastAnswer - lastArrival) / 1000,
    ping,
    refusedShare: (100 * refusals.length) / total,
    failed,
    p50: percentile(acceptedSorted, 50),
    p99: percentile(acceptedSorted, 99),
    refusalP99: percentile(sorted(refusals), 99),
    lateMs: late,
    reasons: [...reasons].map(([why, n]) => `${n} x ${why}`).join('; '),
  };
}

/** GET /ping every 100 ms until stopped, whatever earlier ones do; stop() resolves with their p50 and slowest, in ms. */
function pingProbe() {
  const pinger = new RawClient(origin, Buffer.from(`GET /ping HTTP/1.1\r\nHost: ${new URL(origin).host}\r\n\r\n`, 'latin1'));
  const times = [];
  const pending = [];
  const timer = setInterval(() => {
    const sent = performance.now();
    pending.push(
      pinger.send().then(
        () => times.push(performance.now() - sent),
        () => times.push(Number.POSITIVE_INFINITY),
      ),
    );
  }, 100);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      pinger.close();
      const ascending = sorted(times);
      return { p50: percentile(ascending, 50), max: ascending.at(-1) ?? 0 };
    },
  };
}

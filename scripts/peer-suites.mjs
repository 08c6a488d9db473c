#!/usr/bin/env node
// Runs TorchServe's own API test suites against tsserve with newman, as TorchServe's CI runs them
// (ts_scripts/api_utils.py in pytorch/serve): per suite a fresh `tsserve --start --foreground`
// with that suite's configuration, then newman with TorchServe's data file and environment.
//
//   node scripts/peer-suites.mjs [--data DIR] [--only management,kserve-v1,...]
//
// The data files and environment are TorchServe's (test/postman/), read at run time from --data
// (default ../shared/peer-tests, beside the clone); the collections are tsserve's own
// (scripts/peer-collections.mjs) with TorchServe's requests and assertions. TorchServe's models are
// not here: every archive the data names is examples/mnist's model built by tsserve-archiver under
// that name, the data's download URLs become those local archives, every file a request sends is
// an mnist digit at the path the data names, and expected outputs are the digits' (the list, with
// each suite's passed/total, is in docs/compatibility.md).
// Prints "<suite>: N passed, M failed" per suite (newman's assertions; a request that got no answer
// counts as failed) and, last, the sum as "N passed, M failed". Exits 1 when any fails (a run that
// could not start counts as one failure).
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import newman from 'newman';
import sharp from 'sharp';
import * as collections from './peer-collections.mjs';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const DIGITS = join(ROOT, 'examples/mnist/digits');
// TorchServe CI's configuration per suite (api_utils.py); `https` adds TLS listeners.
const PLAIN = { disable_token_authorization: 'true', enable_model_api: 'true' };
const PROMETHEUS = { ...PLAIN, metrics_mode: 'prometheus' };
const SUITES = [
  { name: 'management', collection: collections.management(), data: 'management_data.json', config: PLAIN },
  { name: 'inference', collection: collections.inference(), data: 'inference_data.json', config: PROMETHEUS },
  { name: 'explanation', collection: collections.explanation(), data: explanationRows, config: PROMETHEUS },
  { name: 'https', collection: collections.https('torchserve'), https: true, config: { ...PLAIN, install_py_dep_per_model: 'true' } },
  { name: 'kserve-management', collection: collections.management(), data: 'management_data.json', config: { ...PLAIN, service_envelope: 'kserve' } },
  { name: 'kserve-v1', collection: collections.kserve('v1'), data: 'kf_inference_data.json', config: { ...PROMETHEUS, service_envelope: 'kserve' } },
  { name: 'kserve-v1-https', collection: collections.https('v1'), https: true, config: { ...PLAIN, service_envelope: 'kserve' } },
  { name: 'kserve-v2', collection: collections.kserve('v2'), data: 'kfv2_inference_data.json', config: { ...PROMETHEUS, service_envelope: 'kservev2' } },
  { name: 'kserve-v2-https', collection: collections.https('v2'), https: true, config: { ...PLAIN, service_envelope: 'kservev2' } },
];

// The files TorchServe's data and collections send (paths relative to its test/ directory, where
// newman runs), each replaced by an mnist digit; `kserve` files are that digit as a KServe request,
// and a text file (sent as text/plain, which the server decodes as text) is the digit in base64.
// The digits of the KServe files are those TorchServe's expected answers name (2 in v1, 1 in v2).
const FILES = {
  '../examples/image_classifier/kitten.jpg': { digit: 3 },
  '../examples/image_classifier/mnist/test_data/0.png': { digit: 0 },
  '../examples/object_detector/persons.jpg': { digit: 4 },
  '../examples/image_segmenter/persons.jpg': { digit: 5 },
  '../examples/Huggingface_Transformers/sample_text.txt': { digit: 6 },
  '../examples/text_classification/sample_text.txt': { digit: 8 },
  '../kubernetes/kserve/kf_request_json/v1/mnist.json': { digit: 2, kserve: 'v1' },
  '../kubernetes/kserve/kf_request_json/v2/mnist/mnist_v2_tensor.json': { digit: 1, kserve: 'v2' },
};
// Mean and standard deviation examples/mnist's handler normalises with: a v2 tensor is the model's input.
const MNIST_MEAN = 0.1302;
const MNIST_STD = 0.3069;
// The id TorchServe's v2 request file carries, which its expected answer echoes.
const V2_REQUEST_ID = 'd3b15cad-50a2-4eaf-80ce-8b0a428bd298';
// freePort's range starts here; the ports it handed out
const PORT_FLOOR = 10_000;
const handedOut = new Set();
// The servers started and not yet ended: a runner stopped by a signal (CI's or tap's timeout) ends
// them too, for each runs in a process group of its own.
const running = new Set();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    for (const server of running) killGroup(server, 'SIGKILL');
    rmSync(work, { recursive: true, force: true });
    process.exit(1);
  });
}

const args = parseArgs(process.argv.slice(2));
const dataDir = resolve(args.data ?? join(ROOT, '..', 'shared', 'peer-tests'));
// TorchServe's environment.json, read by main
let environment;
const work = mkdtempSync(join(tmpdir(), 'tsserve-peer-'));
const testDir = join(work, 'test');

async function main() {
  const names = args.only ? args.only.split(',') : SUITES.map((s) => s.name);
  const unknown = names.filter((n) => !SUITES.some((s) => s.name === n));
  if (unknown.length > 0) throw new Error(`no suite ${unknown.join(', ')}; the suites: ${SUITES.map((s) => s.name).join(', ')}`);
  const chosen = SUITES.filter((s) => names.includes(s.name));
  if (!existsSync(join(dataDir, 'environment.json'))) throw new Error(`no TorchServe data files in ${dataDir} (--data DIR)`);
  environment = JSON.parse(readFileSync(join(dataDir, 'environment.json'), 'utf8'));
  mkdirSync(testDir, { recursive: true });
  const site = join(work, 'site');
  buildArchives(site, archiveNames(chosen));
  const archives = await serveArchives(site);
  await writeRequestFiles();
  const tls = chosen.some((s) => s.https) ? makeCertificate() : undefined;
  let passed = 0;
  let failed = 0;
  for (const suite of chosen) {
    const result = await runSuite(suite, site, archives, tls);
    console.log(`${suite.name}: ${result.passed} passed, ${result.failed} failed`);
    passed += result.passed;
    failed += result.failed;
  }
  archives.server.close();
  archives.server.closeAllConnections();
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 ? 1 : 0;
}

/** The archive files the environment names, which TorchServe's CI puts in the model store. */
function storeArchives() {
  return environment.values.filter((v) => v.key.startsWith('mar_path_')).map((v) => v.value);
}

/**
 * Every archive the environment and the chosen suites' inference data name (download URLs by their last
 * segment). management_data.json's "invalid" URL names none on purpose: its download must fail.
 */
function archiveNames(suites) {
  const names = new Set(storeArchives());
  for (const { data } of suites) {
    if (typeof data !== 'string' || data === 'management_data.json') continue;
    for (const row of readData(data)) if (/^https?:/.test(row.url)) names.add(basename(row.url));
  }
  return [...names].map((n) => n.replace(/\.mar$/, ''));
}

// A download URL in the data (TorchServe's mar_files site), its archive's file name captured.
const DOWNLOAD_URL = /https?:\/\/[^/\s&?]+\/(?:[^\s&?]*\/)?([^/\s&?]+\.mar)/g;

/** The download site on 127.0.0.1: GET /<name>.mar answers the archive built under that name, or 404. */
async function serveArchives(site) {
  const server = createHttpServer((req, res) => {
    const file = join(site, basename(decodeURIComponent(new URL(req.url, 'http://x').pathname)));
    if (req.method !== 'GET' || !file.endsWith('.mar') || !existsSync(file)) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  const port = await freePort();
  await new Promise((done) => server.listen(port, '127.0.0.1', done));
  return { server, url: `http://127.0.0.1:${port}` };
}

/** Every string of a data row with its download URLs turned into the local site's. */
function localUrls(row, archives) {
  return Object.fromEntries(
    Object.entries(row).map(([k, v]) => [k, typeof v === 'string' ? v.replace(DOWNLOAD_URL, (_, name) => `${archives.url}/${name}`) : v]),
  );
}

/** examples/mnist's model archived under each name, into `dir`. */
function buildArchives(dir, names) {
  for (const name of names) {
    const r = spawnSync(
      process.execPath,
      [
        join(ROOT, 'bin/tsserve-archiver.js'),
        '--model-name',
        name,
        '--version',
        '1.0',
        '--serialized-file',
        join(ROOT, 'examples/mnist/mnist.onnx'),
        '--handler',
        join(ROOT, 'examples/mnist/mnist_handler.ts'),
        '--export-path',
        dir,
        '--force',
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`tsserve-archiver failed for ${name}: ${r.stderr}`);
  }
}

/** The digit images and KServe request bodies at the paths TorchServe's data names. */
async function writeRequestFiles() {
  for (const [path, { digit, kserve }] of Object.entries(FILES)) {
    const target = join(testDir, path);
    mkdirSync(dirname(target), { recursive: true });
    const image = digitImage(digit);
    if (target.endsWith('.txt')) writeFileSync(target, readFileSync(image).toString('base64'));
    else if (!kserve) copyFileSync(image, target);
    else if (kserve === 'v1') writeFileSync(target, JSON.stringify({ instances: [{ data: readFileSync(image).toString('base64') }] }));
    else
      writeFileSync(
        target,
        JSON.stringify({ id: V2_REQUEST_ID, inputs: [{ name: 'input-0', shape: [1, 28, 28], datatype: 'FP32', data: await digitTensor(image) }] }),
      );
  }
}

function digitImage(digit) {
  return join(DIGITS, `${digit}_0.png`);
}

/** The digit as examples/mnist's handler feeds its model: 28 rows of 28 normalised pixels. */
async function digitTensor(image) {
  const grey = await sharp(image).greyscale().resize(28, 28, { fit: 'fill' }).raw().toBuffer();
  return Array.from({ length: 28 }, (_, y) => Array.from(grey.subarray(y * 28, y * 28 + 28), (p) => (p / 255 - MNIST_MEAN) / MNIST_STD));
}

function readData(file) {
  return JSON.parse(readFileSync(join(dataDir, file), 'utf8'));
}

/**
 * A data file's rows with this project's models: download URLs become the local archive of the
 * same name, and an expected output becomes the digit of the file the row sends (text for
 * text/plain rows, the number for JSON rows, compared for equality).
 */
function localRows(file, archives) {
  return readData(file).map((row) => {
    const local = localUrls(row, archives);
    const sent = FILES[row.file];
    if (row.file === undefined) return local;
    if (!sent) throw new Error(`${file}: no local file for ${row.file}`);
    if (sent.kserve) return local;
    delete local.validator;
    delete local.tolerance;
    if (row['content-type'] === 'text/plain') local.expected = String(sent.digit);
    else if (row['content-type'] === 'application/json') local.expected = sent.digit;
    return local;
  });
}

/**
 * TorchServe's explanation data (explanation_data.json) is not among the data files here: its one
 * row is the mnist row of kf_inference_data.json, sending mnist's 0.png, with the explanation
 * without KServe's envelope (only sizes are compared).
 */
function explanationRows() {
  return readData('kf_inference_data.json').map((row) => ({
    url: row.url,
    model_name: row.model_name,
    worker: row.worker,
    synchronous: row.synchronous,
    file: '../examples/image_classifier/mnist/test_data/0.png',
    'content-type': row['content-type'],
    expected_explain: row.expected_explain.explanations,
  }));
}

async function runSuite(suite, site, archives, tls) {
  // a model store of its own: downloads land in it, as in TorchServe's
  const store = mkdtempSync(join(work, `${suite.name}-store-`));
  for (const name of storeArchives()) copyFileSync(join(site, name), join(store, name));
  const ports = { pred: await freePort(), mgmt: await freePort(), metric: await freePort() };
  const scheme = suite.https ? 'https' : 'http';
  const config = join(work, `${suite.name}.properties`);
  writeFileSync(
    config,
    Object.entries({
      inference_address: `${scheme}://127.0.0.1:${ports.pred}`,
      management_address: `${scheme}://127.0.0.1:${ports.mgmt}`,
      metrics_address: `${scheme}://127.0.0.1:${ports.metric}`,
      grpc_inference_port: await freePort(),
      grpc_management_port: await freePort(),
      model_store: store,
      // TorchServe's default allows every http(s) URL; tsserve's allows the model store only
      allowed_urls: `file://${store}/.*,${archives.url}/.*`,
      ...(suite.https ? { private_key_file: tls.key, certificate_file: tls.cert } : {}),
      ...suite.config,
    })
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
  );
  const log = join(work, `${suite.name}.log`);
  let server;
  try {
    server = await startServer(config, store, log, ports.pred, scheme);
    const data = typeof suite.data === 'function' ? suite.data() : suite.data ? localRows(suite.data, archives) : undefined;
    const summary = await runNewman(suite, data, ports);
    return tally(suite.name, summary, log);
  } catch (err) {
    console.error(`${suite.name}: ${err.message}\n${logEnd(log)}`);
    return { passed: 0, failed: 1 };
  } finally {
    if (server) await stopServer(server);
  }
}

function runNewman(suite, iterationData, ports) {
  const envVar = Object.entries({
    hostname: '127.0.0.1',
    protocol: suite.https ? 'https' : 'http',
    'pred-port': ports.pred,
    'mgmt-port': ports.mgmt,
    'metric-port': ports.metric,
    'sec-pred-port': ports.pred,
    'sec-mgmt-port': ports.mgmt,
    'sec-metric-port': ports.metric,
  }).map(([key, value]) => ({ key, value: String(value) }));
  return new Promise((done, fail) => {
    newman.run(
      {
        collection: suite.collection,
        environment: environment,
        envVar,
        iterationData,
        reporters: [],
        insecure: true,
        workingDir: testDir,
        insecureFileRead: true,
        timeoutRequest: 120_000,
      },
      (err, summary) => (err ? fail(err) : done(summary)),
    );
  });
}

/** Newman's assertions passed and failed (a request with no answer is one more failure), failures named. */
function tally(name, summary, log) {
  const { assertions, requests } = summary.run.stats;
  const failed = assertions.failed + requests.failed;
  for (const f of summary.run.failures.slice(0, 10)) {
    const where = f.source?.name ?? '';
    console.error(`${name}: FAIL ${where} (iteration ${(f.cursor?.iteration ?? 0) + 1}): ${f.error?.message}`);
  }
  if (failed > 0) console.error(`${name}: ${logEnd(log)}`);
  return { passed: assertions.total - assertions.failed, failed };
}

function logEnd(log) {
  const lines = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-20) : [];
  return `the server's log ends:\n${lines.join('\n')}`;
}

async function startServer(config, store, log, predPort, scheme) {
  const out = openSync(log, 'a');
  // a temp dir of its own: tsserve (as TorchServe) keeps one PID file per temp dir
  const tmp = mkdtempSync(join(work, 'tmp-'));
  const server = spawn(process.execPath, [join(ROOT, 'bin/tsserve.js'), '--start', '--foreground', '--ncs', '--model-store', store, '--ts-config', config], {
    stdio: ['ignore', out, out],
    detached: true,
    env: { ...process.env, TMPDIR: tmp },
  });
  running.add(server);
  server.once('exit', () => running.delete(server));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`tsserve exited with ${server.exitCode}`);
    if ((await ping(scheme, predPort)) === 200) return server;
    await new Promise((r) => setTimeout(r, 250));
  }
  await stopServer(server);
  throw new Error('tsserve did not answer /ping within 60 s');
}

function ping(scheme, port) {
  if (scheme === 'http')
    return fetch(`http://127.0.0.1:${port}/ping`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.status,
      () => 0,
    );
  return new Promise((done) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/ping', rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      done(res.statusCode);
    });
    req.on('error', () => done(0));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** SIGTERM to the server's process group (its workers too), SIGKILL after 10 s. */
async function stopServer(server) {
  if (server.exitCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  if (!killGroup(server, 'SIGTERM')) return;
  const timer = setTimeout(() => killGroup(server, 'SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Whether the signal reached the server's process group (false: it is gone). */
function killGroup(server, signal) {
  try {
    process.kill(-server.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** A self-signed certificate for 127.0.0.1, made by openssl as a TorchServe user makes one. */
function makeCertificate() {
  const key = join(work, 'key.pem');
  const cert = join(work, 'cert.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1'], {
    encoding: 'utf8',
  });
  if (r.status !== 0 || !existsSync(cert)) throw new Error(`openssl could not make a certificate: ${r.stderr}`);
  return { key, cert };
}

/**
 * A port free on 127.0.0.1 below the kernel's ephemeral range, as test/helpers.ts's freePort: a
 * port the kernel hands out (listen on 0) may be taken by a client connection of a test running
 * beside this one before the server binds it.
 */
async function freePort() {
  const top = ephemeralRangeStart();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = top - 1 - Math.floor(Math.random() * (top - 1 - PORT_FLOOR));
    if (!handedOut.has(port) && (await canListen(port))) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port below ${top} after 50 tries`);
}

function ephemeralRangeStart() {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > PORT_FLOOR + 1000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

function canListen(port) {
  return new Promise((done) => {
    const s = createServer();
    s.once('error', () => done(false));
    s.listen(port, '127.0.0.1', () => s.close(() => done(true)));
  });
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--keep') out.keep = true;
    else if (flag === '--data' || flag === '--only') out[flag.slice(2)] = argv[++i];
    else {
      console.error(`usage: node scripts/peer-suites.mjs [--data DIR] [--only SUITE,...] [--keep]   (unknown: ${flag})`);
      process.exit(2);
    }
  }
  return out;
}

// last: the module's constants above are all initialised before main runs
try {
  await main();
} catch (err) {
  console.error(`peer-suites: ${err.message}`);
  console.log('0 passed, 1 failed');
  process.exitCode = 1;
} finally {
  if (!args.keep) rmSync(work, { recursive: true, force: true });
  else console.error(`kept ${work}`);
}

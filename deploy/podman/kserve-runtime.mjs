// The image run exactly as KServe's stock TorchServe runtime runs TorchServe's image
// (test/fixtures/kserve/kserve-torchserve.yaml: its args, env, uid and dropped capabilities, with
// /mnt/models mounted read-only), answering KServe's own MNIST samples over every protocol that
// runtime serves, its metrics port, and a clean exit on SIGTERM with requests queued.
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { parse } from 'yaml';
import { check, exitCode, fact, freePort, get, logsOf, podman, podmanTimed, podmanTry, post, ROOT, results, ULIMITS, same, sleep, waitFor } from './lib.mjs';

/** How long after its first answer the server may still be warming its front end up (front_end_warmup_ms, 2 s). */
const READY_WITHIN_MS = 15_000;

const KSERVE = join(ROOT, 'test', 'fixtures', 'kserve');
const START_TIMEOUT_MS = 180_000;

function sample(name) {
  return JSON.parse(readFileSync(join(KSERVE, name), 'utf8'));
}

function grpcCall(address, protoFile, includeDir, service, method, request) {
  const definition = loadSync(protoFile, { keepCase: true, longs: Number, defaults: true, includeDirs: [includeDir] });
  const Client = grpc.makeGenericClientConstructor(definition[service], service);
  const client = new Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client[method](request, { deadline: Date.now() + 30_000 }, (err, value) => {
      client.close();
      resolve(err ? { error: `${err.code} ${err.details}` } : value);
    });
  });
}

const kserveGrpc = (address, method, request) =>
  grpcCall(address, join(KSERVE, 'grpc_predict_v2.proto'), KSERVE, 'inference.GRPCInferenceService', method, request);
const torchserveOip = (address, method, request) =>
  grpcCall(address, 'open_inference_grpc.proto', join(ROOT, 'src', 'grpc', 'proto'), 'org.pytorch.serve.grpc.openinference.GRPCInferenceService', method, request);

/** The stock runtime's container, as KServe starts it for an InferenceService with `isvcArgs`. */
function stockRuntime() {
  const runtime = parse(readFileSync(join(KSERVE, 'kserve-torchserve.yaml'), 'utf8'));
  const container = runtime.spec.containers[0];
  return {
    args: container.args,
    envNames: container.env.map((e) => e.name),
    user: String(container.securityContext.runAsUser),
    dropAll: container.securityContext.capabilities.drop.includes('ALL'),
    cpus: container.resources.limits.cpu,
    memory: container.resources.limits.memory.replace(/i$/, '').toLowerCase(),
  };
}

/** /mnt/models as KServe's storage initializer lays it out: config/ and model-store/. */
function modelsDir() {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-kserve-models-'));
  mkdirSync(join(dir, 'config'));
  mkdirSync(join(dir, 'model-store'));
  copyFileSync(join(ROOT, 'deploy', 'kserve', 'storage', 'config', 'config.properties'), join(dir, 'config', 'config.properties'));
  copyFileSync(join(ROOT, 'model-store', 'mnist.mar'), join(dir, 'model-store', 'mnist.mar'));
  for (const path of [dir, join(dir, 'config'), join(dir, 'model-store')]) chmodSync(path, 0o755);
  for (const path of [join(dir, 'config', 'config.properties'), join(dir, 'model-store', 'mnist.mar')]) chmodSync(path, 0o644);
  return dir;
}

/** Runs one container as the runtime does, checks it with `scenario.checks`, stops it with SIGTERM. */
async function runScenario(scenario, models, image) {
  const mark = results.length;
  const runtime = stockRuntime();
  const container = `tsserve-check-${scenario.name}-${process.pid}`;
  const ports = Object.fromEntries(await Promise.all([8080, 8081, 8082, 8085, 7070].map(async (p) => [p, await freePort()])));
  const env = { TS_SERVICE_ENVELOPE: scenario.envelope, ...scenario.env };
  console.log(`\n# ${scenario.name}: ${runtime.args.join(' ')} ${scenario.isvcArgs.join(' ')}  (${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')})`);
  check(`${scenario.name}: the stock runtime sets ${runtime.envNames.join(', ')}`, runtime.envNames.includes('TS_SERVICE_ENVELOPE'));
  const started = Date.now();
  podman('run', '-d', '--name', container, ...ULIMITS, '--network', 'slirp4netns',
    ...Object.entries(ports).flatMap(([inner, outer]) => ['-p', `127.0.0.1:${outer}:${inner}`]),
    '--user', runtime.user, ...(runtime.dropAll ? ['--cap-drop', 'ALL'] : []), '--security-opt', 'no-new-privileges',
    '--cpus', runtime.cpus, '--memory', runtime.memory,
    '-v', `${models}:/mnt/models:ro`,
    ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
    image, ...runtime.args, ...scenario.isvcArgs);
  try {
    const up = await waitFor(scenario.firstPrediction(ports), START_TIMEOUT_MS);
    const ms = Date.now() - started;
    check(`${scenario.name}: answers a prediction after start`, up, `nothing within ${START_TIMEOUT_MS} ms`);
    if (!up) return;
    fact(`${scenario.name}: container start to first answered prediction (ms)`, ms);
    await scenario.checks(ports);
    const metrics = await get(`http://127.0.0.1:${ports[8082]}/metrics`);
    check(`${scenario.name}: metrics on 8082 count the predictions`, metrics.status === 200 && /ts_inference_requests_total\{[^}]*model_name="mnist"/.test(metrics.body), `status ${metrics.status}`);
    const uid = podman('exec', container, 'id', '-u');
    check(`${scenario.name}: runs as uid ${runtime.user}`, uid === runtime.user, uid);
    // SIGTERM while requests are queued: every one of them is still answered, then the exit is 0.
    const queued = Array.from({ length: 8 }, () => scenario.slowRequest(ports).then((r) => r.status, (err) => String(err)));
    await sleep(20);
    const stopMs = await podmanTimed('stop', '-t', '30', container);
    const statuses = await Promise.all(queued);
    check(`${scenario.name}: requests queued at SIGTERM are all answered`, statuses.every((s) => s === 200), statuses.join(' '));
    const code = exitCode(container);
    check(`${scenario.name}: SIGTERM drains and exits 0 (${stopMs} ms)`, code === '0' && stopMs < 30_000, `exit code ${code} after ${stopMs} ms`);
  } finally {
    if (results.slice(mark).some((r) => !r.ok)) console.log(logsOf(container));
    podmanTry('rm', '-f', container);
  }
}

const v2Output = (name, digit) => ({ name, datatype: 'INT64', data: [digit], shape: [1] });
const v2Answer = (name, digit) => ({ id: 'd3b15cad-50a2-4eaf-80ce-8b0a428bd298', model_name: 'mnist', model_version: '1.0', outputs: [v2Output(name, digit)] });
const grpcDigit = (answer) => answer?.outputs?.[0]?.contents?.int64_contents;

const SCENARIOS = [
  {
    // An InferenceService with protocolVersion v1: KServe sets TS_SERVICE_ENVELOPE=kserve.
    name: 'kserve-v1',
    envelope: 'kserve',
    env: {},
    isvcArgs: ['--disable-token-auth', '--enable-model-api'],
    firstPrediction: (ports) => async () => (await post(`http://127.0.0.1:${ports[8080]}/v1/models/mnist:predict`, sample('mnist_v1.json'))).status === 200,
    slowRequest: (ports) => post(`http://127.0.0.1:${ports[8080]}/v1/models/mnist:explain`, sample('mnist_v1.json')),
    async checks(ports) {
      const base = `http://127.0.0.1:${ports[8080]}`;
      same('kserve-v1: v1 predict on 8080, KServe\'s mnist.json', (await post(`${base}/v1/models/mnist:predict`, sample('mnist_v1.json'))).body, { predictions: [2] });
      same('kserve-v1: v1 model readiness on 8080', (await get(`${base}/v1/models/mnist`)).body, { name: 'mnist', ready: true });
      same('kserve-v1: v1 model list on 8080', (await get(`${base}/v1/models`)).body, { models: ['mnist'] });
      const explained = await post(`${base}/v1/models/mnist:explain`, sample('mnist_v1.json'));
      check('kserve-v1: v1 explain on 8080 answers 28 x 28 importances', explained.status === 200 && explained.body?.explanations?.[0]?.[0]?.length === 28, `status ${explained.status}`);
      same('kserve-v1: TorchServe API on 8085 (inference and management shared)', (await get(`http://127.0.0.1:${ports[8085]}/ping`)).body, { status: 'Healthy' });
    },
  },
  {
    // protocolVersion v2 with TS_OPEN_INFERENCE_PROTOCOL=oip, as TorchServe's own OIP tests run it.
    name: 'kserve-v2-oip',
    envelope: 'kservev2',
    env: { TS_OPEN_INFERENCE_PROTOCOL: 'oip' },
    isvcArgs: ['--disable-token-auth', '--enable-model-api'],
    firstPrediction: (ports) => async () => (await post(`http://127.0.0.1:${ports[8080]}/v2/models/mnist/infer`, sample('mnist_v2_tensor.json'))).status === 200,
    slowRequest: (ports) => post(`http://127.0.0.1:${ports[8080]}/v2/models/mnist/explain`, sample('mnist_v2_bytes.json')),
    async checks(ports) {
      for (const [port, what] of [[8080, 'v2 on 8080'], [8085, 'OIP HTTP on 8085']]) {
        const base = `http://127.0.0.1:${ports[port]}`;
        same(`kserve-v2-oip: ${what}, FP32 tensor [1, 28, 28] (a 0)`, (await post(`${base}/v2/models/mnist/infer`, sample('mnist_v2_tensor.json'))).body, v2Answer('input-0', 0));
        same(`kserve-v2-oip: ${what}, BYTES PNG with shape [-1] (a 0)`, (await post(`${base}/v2/models/mnist/infer`, sample('mnist_v2_bytes.json'))).body, v2Answer('312a4eb0-0ca7-4803-a101-a6d2c18486fe', 0));
        // Ready once the front end's warm-up is over (KServe's readiness probe waits for it); a
        // prediction is answered before that.
        const ready = await waitFor(async () => (await get(`${base}/v2/health/ready`)).body?.ready === true, READY_WITHIN_MS);
        check(`kserve-v2-oip: ${what}, server ready within ${READY_WITHIN_MS / 1000} s of the first answer`, ready, 'still {"ready":false}');
        same(`kserve-v2-oip: ${what}, server live`, (await get(`${base}/v2/health/live`)).body, { live: true });
        same(`kserve-v2-oip: ${what}, model ready`, (await get(`${base}/v2/models/mnist/ready`)).body, { name: 'mnist', ready: true });
      }
      const kserveGrpcAt = `127.0.0.1:${ports[8081]}`;
      const oipGrpcAt = `127.0.0.1:${ports[7070]}`;
      same('kserve-v2-oip: KServe gRPC v2 on 8081, FP32 tensor', grpcDigit(await kserveGrpc(kserveGrpcAt, 'ModelInfer', sample('mnist_v2_tensor_grpc.json'))), [0]);
      same('kserve-v2-oip: KServe gRPC v2 on 8081, BYTES PNG', grpcDigit(await kserveGrpc(kserveGrpcAt, 'ModelInfer', sample('mnist_v2_bytes_grpc.json'))), [0]);
      same('kserve-v2-oip: KServe gRPC v2 on 8081, ServerReady', await kserveGrpc(kserveGrpcAt, 'ServerReady', {}), { ready: true });
      same('kserve-v2-oip: OIP gRPC on 7070, FP32 tensor', grpcDigit(await torchserveOip(oipGrpcAt, 'ModelInfer', sample('mnist_v2_tensor_grpc.json'))), [0]);
      same('kserve-v2-oip: OIP gRPC on 7070, BYTES PNG', grpcDigit(await torchserveOip(oipGrpcAt, 'ModelInfer', sample('mnist_v2_bytes_grpc.json'))), [0]);
      same('kserve-v2-oip: OIP gRPC on 7070, ServerReady', await torchserveOip(oipGrpcAt, 'ServerReady', {}), { ready: true });
      same('kserve-v2-oip: OIP gRPC on 7070, ServerLive', await torchserveOip(oipGrpcAt, 'ServerLive', {}), { live: true });
      same('kserve-v2-oip: OIP gRPC on 7070, ModelReady', await torchserveOip(oipGrpcAt, 'ModelReady', { name: 'mnist' }), { ready: true });
    },
  },
];

/** Plays every scenario with `image`. */
export async function checkKserveRuntime(image) {
  const models = modelsDir();
  try {
    for (const scenario of SCENARIOS) await runScenario(scenario, models, image);
  } finally {
    rmSync(models, { recursive: true, force: true });
  }
}

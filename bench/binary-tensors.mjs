#!/usr/bin/env node
// Tensors without JSON (issue 34 item 2): one 600 KB FP32 tensor (1x3x224x224) sent as JSON and in
// binary form, over REST (KServe v2 JSON; the binary tensor data extension) and gRPC (fp32_contents;
// raw_input_contents), to two kservev2 models: `colours` (image_classifier on the fixture
// colour_classifier.onnx, a small answer) and `tensors` (test/fixtures/tensor_handler.ts on
// colour_segmenter.onnx, a 600 KB FP32 answer, asked in binary form where the input is).
//
//   node bench/binary-tensors.mjs [--requests 20] [--warm-up 3]
//
// Starts `tsserve --start` (free 127.0.0.1 ports, a temporary folder), then per model and form sends
// --requests requests one after another (after --warm-up unmeasured ones) and reports: the client's
// median and p90 ms; the server's time per request, ts_inference_latency_microseconds' rise over the
// phase divided by its requests (from enqueue to the answer: the worker's parse, the handler, the
// answer's way back); the server's CPU per request (front end and workers, user + system); and
// whether every form answered the same values as the JSON form. Results JSON in bench/results/.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { createArchive } from '../dist/src/archive/write.js';
import { childPids, cpuSeconds, median, percentile, sorted, userServer } from './lib.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURES = join(ROOT, 'test', 'fixtures');
const { values: opts } = parseArgs({ options: { requests: { type: 'string', default: '20' }, 'warm-up': { type: 'string', default: '3' } } });
const REQUESTS = Number(opts.requests);
const WARM_UP = Number(opts['warm-up']);
const SHAPE = [1, 3, 224, 224];
const COUNT = 3 * 224 * 224;

// Seeded values in [-2, 2): float32, so JSON and bytes carry the same numbers.
let seed = 34;
const values = Float32Array.from({ length: COUNT }, () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return (seed / 2 ** 31) * 4 - 2;
});
const bytes = Buffer.from(values.buffer);

const server = await userServer('tsserve-binary-', [
  'service_envelope=kservev2',
  'ts_open_inference_protocol=true',
  'metrics_mode=prometheus',
  'default_workers_per_model=1',
]);
createArchive({
  modelName: 'colours',
  version: '1.0',
  exportPath: server.store,
  force: true,
  handler: 'image_classifier',
  serializedFile: join(FIXTURES, 'colour_classifier.onnx'),
});
createArchive({
  modelName: 'tensors',
  version: '1.0',
  exportPath: server.store,
  force: true,
  handler: join(FIXTURES, 'tensor_handler.ts'),
  serializedFile: join(FIXTURES, 'colour_segmenter.onnx'),
});
const config = readFileSync(join(server.dir, 'config.properties'), 'utf8');
const metricsUrl = /metrics_address=(\S+)/.exec(config)[1];
const grpcPort = /grpc_inference_port=(\d+)/.exec(config)[1];

const definition = loadSync('open_inference_grpc.proto', { keepCase: true, longs: Number, defaults: true, includeDirs: [join(ROOT, 'src', 'grpc', 'proto')] });
const service = 'org.pytorch.serve.grpc.openinference.GRPCInferenceService';
const Client = grpc.makeGenericClientConstructor(definition[service], service);
const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });

/** Each form: send one request, answer its output's values (as a Float32Array or the JSON data). */
const FORMS = {
  'rest-json': async (model) => {
    const res = await fetch(`${server.inference}/v2/models/${model}/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', shape: SHAPE, datatype: 'FP32', data: Array.from(values) }] }),
      headers: { 'content-type': 'application/json' },
    });
    return restOutput(res);
  },
  'rest-binary': async (model) => {
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'x', shape: SHAPE, datatype: 'FP32', parameters: { binary_data_size: bytes.length } }],
        parameters: { binary_data_output: true },
      }),
    );
    const res = await fetch(`${server.inference}/v2/models/${model}/infer`, {
      method: 'POST',
      body: Buffer.concat([header, bytes]),
      headers: { 'inference-header-content-length': String(header.length), 'content-type': 'application/octet-stream' },
    });
    return restOutput(res);
  },
  'grpc-contents': (model) =>
    infer({ model_name: model, inputs: [{ name: 'x', datatype: 'FP32', shape: SHAPE, contents: { fp32_contents: Array.from(values) } }] }),
  'grpc-raw': (model) => infer({ model_name: model, inputs: [{ name: 'x', datatype: 'FP32', shape: SHAPE }], raw_input_contents: [bytes] }),
};

async function restOutput(res) {
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${body.toString().slice(0, 200)}`);
  const length = res.headers.get('inference-header-content-length');
  const header = JSON.parse(body.subarray(0, length === null ? body.length : Number(length)).toString('utf8'));
  const output = header.outputs[0];
  if (length === null) return output.data;
  return decoded(output.datatype, body.subarray(Number(length), Number(length) + output.parameters.binary_data_size));
}

function infer(request) {
  return new Promise((resolve, reject) =>
    client.ModelInfer(request, (err, answer) => {
      if (err) return reject(err);
      const output = answer.outputs[0];
      const raw = answer.raw_output_contents[0];
      if (raw) return resolve(decoded(output.datatype, raw));
      const contents = output.contents;
      resolve(output.datatype === 'BYTES' ? contents.bytes_contents.map((b) => JSON.parse(b.toString())) : contents.fp32_contents);
    }),
  );
}

/** An output's bytes as its values: FP32 as floats, BYTES as each element's JSON. */
function decoded(datatype, raw) {
  if (datatype === 'FP32') return Array.from(new Float32Array(Uint8Array.from(raw).buffer));
  const out = [];
  for (let at = 0; at < raw.length; ) {
    const n = raw.readUInt32LE(at);
    out.push(JSON.parse(raw.subarray(at + 4, at + 4 + n).toString('utf8')));
    at += 4 + n;
  }
  return out;
}

async function latencyUs(model) {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('ts_inference_latency_microseconds{') && l.includes(`model_name="${model}"`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

function treeCpu(pid) {
  return cpuSeconds(pid) + childPids(pid).reduce((sum, child) => sum + cpuSeconds(child), 0);
}

const result = { requests: REQUESTS, warmUp: WARM_UP, tensorBytes: bytes.length, loadAverageBefore: loadavg().map((l) => Math.round(l * 10) / 10), models: {} };
try {
  await server.start(['--models', 'colours.mar', 'tensors.mar']);
  const pid = server.pid();
  for (const model of ['colours', 'tensors']) {
    const forms = {};
    let reference;
    for (const [form, send] of Object.entries(FORMS)) {
      for (let i = 0; i < WARM_UP; i++) await send(model);
      const [latencyBefore, cpuBefore] = [await latencyUs(model), treeCpu(pid)];
      const ms = [];
      let answer;
      for (let i = 0; i < REQUESTS; i++) {
        const started = performance.now();
        answer = await send(model);
        ms.push(performance.now() - started);
      }
      const [latencyAfter, cpuAfter] = [await latencyUs(model), treeCpu(pid)];
      reference ??= JSON.stringify(answer);
      const ascending = sorted(ms);
      forms[form] = {
        clientMedianMs: round(median(ms)),
        clientP90Ms: round(percentile(ascending, 90)),
        serverMsPerRequest: round((latencyAfter - latencyBefore) / REQUESTS / 1000),
        serverCpuMsPerRequest: round(((cpuAfter - cpuBefore) * 1000) / REQUESTS),
        sameOutputAsRestJson: JSON.stringify(answer) === reference,
      };
      console.log(model, form, JSON.stringify(forms[form]));
    }
    const ratio = (json, binary, key) => round(forms[json][key] / forms[binary][key]);
    forms.speedup = {
      restServer: ratio('rest-json', 'rest-binary', 'serverMsPerRequest'),
      restClient: ratio('rest-json', 'rest-binary', 'clientMedianMs'),
      grpcServer: ratio('grpc-contents', 'grpc-raw', 'serverMsPerRequest'),
      grpcClient: ratio('grpc-contents', 'grpc-raw', 'clientMedianMs'),
    };
    console.log(model, 'speedup (JSON / binary)', JSON.stringify(forms.speedup));
    result.models[model] = forms;
  }
} finally {
  client.close();
  await server.stop();
  server.remove();
}
result.loadAverageAfter = loadavg().map((l) => Math.round(l * 10) / 10);
const stamp = new Date().toISOString().replace(/[-:]/g, '').slice(0, 13).replace('T', '-');
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
const file = join(ROOT, 'bench', 'results', `${stamp}-binary-tensors.json`);
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(`wrote ${file}`);

function round(v) {
  return Math.round(v * 100) / 100;
}

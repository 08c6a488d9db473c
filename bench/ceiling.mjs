#!/usr/bin/env node
// The in-process ceiling: the best server for bench/run.sh's job that fits in one Node process,
// to measure what tsserve's process isolation (a main process, workers behind IPC) costs.
//
//   node bench/ceiling.mjs --models DIR [--port 18095] [--inflight N] [--threads N] [--batch 8]
//
// POST /predictions/{mnist,resnet18}: Fastify, the request body decoded as tsserve's handlers
// decode it (tsserve/vision: small PNG/JPEG in JavaScript, the rest through sharp), batches of
// what is queued (up to --batch) without waiting, run on onnxruntime sessions in this process,
// --inflight batches at a time, each session with --threads intra-op threads. Each model's own
// best was measured here (wrk, 32 connections, 2 cores): mnist two sessions of one thread (5571
// req/s, against 4705 for one of two), resnet18 one session of two threads (54.6 against 44.3);
// those are the defaults, and --inflight/--threads set both models alike.
// Answers what tsserve's handlers answer: the digit, or the top 5 classes. No IPC, no queue
// limits, no timeouts, no metrics, no logs: what tsserve adds to it is the price of the rest.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import ort from 'onnxruntime-node';
import { decodeRgb, decodeSmall, IMAGENET, imageBatch, softmax, toGrey, topK } from '../dist/handlers/vision.js';
import { turnOffOrtTelemetry } from '../dist/src/runtime/onnx.js';

const { values: opts } = parseArgs({
  options: {
    models: { type: 'string' },
    port: { type: 'string', default: '18095' },
    inflight: { type: 'string' },
    threads: { type: 'string' },
    batch: { type: 'string', default: '8' },
  },
});
if (!opts.models) {
  console.error('usage: node bench/ceiling.mjs --models DIR [--port N] [--inflight N] [--threads N] [--batch N]');
  process.exit(2);
}
const BATCH = Number(opts.batch);

/** Per model: how a batch of bodies becomes a tensor, and how an output row becomes an answer. */
const MODELS = {
  mnist: { inflight: 2, threads: 1, preprocess: mnistTensor, answer: (row) => row.indexOf(Math.max(...row)) },
  resnet18: {
    inflight: 1,
    threads: 2,
    preprocess: (bodies) =>
      imageBatch(
        bodies.map((body) => ({ body })),
        IMAGENET,
      ),
    answer: (row) => Object.fromEntries(topK(softmax(row), 5)),
  },
};

turnOffOrtTelemetry(); // as tsserve's workers run: no telemetry files, no uploads (docs/deploy.md)
const servers = {};
for (const [name, model] of Object.entries(MODELS)) {
  const inflight = Number(opts.inflight ?? model.inflight);
  const options = { intraOpNumThreads: Number(opts.threads ?? model.threads), interOpNumThreads: 1 };
  const sessions = await Promise.all(Array.from({ length: inflight }, () => ort.InferenceSession.create(join(opts.models, `${name}.onnx`), options)));
  servers[name] = batcher(name, sessions);
}

const app = Fastify({ logger: false, bodyLimit: 6553500 });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
app.post('/predictions/:model', async (request, reply) => {
  const server = servers[request.params.model];
  if (!server) return reply.code(404).send({ code: 404, message: 'no such model' });
  return server(request.body);
});
await app.listen({ port: Number(opts.port), host: '127.0.0.1' });
console.log(`ceiling on http://127.0.0.1:${opts.port}/predictions/{${Object.keys(MODELS).join(',')}}`);

/** A function from a body to its answer that batches what is queued onto the free sessions. */
function batcher(name, sessions) {
  const { preprocess, answer } = MODELS[name];
  const queue = [];
  const free = [...sessions];
  const pump = () => {
    while (queue.length > 0 && free.length > 0) {
      const session = free.pop();
      const jobs = queue.splice(0, BATCH);
      void runBatch(session, jobs).finally(() => {
        free.push(session);
        pump();
      });
    }
  };
  const runBatch = async (session, jobs) => {
    try {
      const input = await preprocess(jobs.map((j) => j.body));
      const output = (await session.run({ [session.inputNames[0]]: input }))[session.outputNames[0]];
      const width = output.dims[1];
      for (const [i, job] of jobs.entries()) job.resolve(answer(Array.from(output.data.subarray(i * width, (i + 1) * width))));
    } catch (err) {
      for (const job of jobs) job.reject(err);
    }
  };
  return (body) =>
    new Promise((resolve, reject) => {
      queue.push({ body, resolve, reject });
      pump();
    });
}

/** As examples/mnist's handler: 28x28 grey, normalised with the training digits' mean and std. */
async function mnistTensor(bodies) {
  const side = 28;
  const pixels = side * side;
  const data = new Float32Array(bodies.length * pixels);
  await Promise.all(
    bodies.map(async (bytes, i) => {
      const small = decodeSmall(bytes);
      const grey =
        small && small.width === side && small.height === side
          ? toGrey(small)
          : toGrey({ ...(await decodeRgb(bytes, (image) => image.resize(side, side, { fit: 'fill' }))), width: side, height: side, channels: 3 });
      for (let p = 0; p < pixels; p++) data[i * pixels + p] = (grey[p] / 255 - 0.1302) / 0.3069;
    }),
  );
  return new ort.Tensor('float32', data, [bodies.length, 1, side, side]);
}

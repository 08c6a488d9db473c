#!/usr/bin/env node
// Makes speech.wav, the example audio of the VAD model: two sentences spoken by espeak-ng
// (Debian package espeak-ng), resampled to 16 kHz mono 16-bit, with silence around and between
// them. Prints where the speech is. Run once; the WAV is committed.
//   node examples/vad/make_audio.mjs
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RATE = 16000;
const ESPEAK_RATE = 22050;
const here = dirname(fileURLToPath(import.meta.url));

/** espeak-ng's voice as 16 kHz samples in [-1, 1], linearly resampled. */
function speak(text) {
  const wav = execFileSync('espeak-ng', ['-v', 'en', '-s', '150', '--stdout', text]);
  // espeak-ng writes a plain 44-byte header, then 16-bit mono samples at 22050 Hz.
  const pcm = new Int16Array(wav.buffer.slice(wav.byteOffset + 44, wav.byteOffset + wav.length - (wav.length % 2)));
  const out = new Float32Array(Math.floor((pcm.length * RATE) / ESPEAK_RATE));
  for (let i = 0; i < out.length; i++) {
    const x = (i * ESPEAK_RATE) / RATE;
    const j = Math.floor(x);
    const f = x - j;
    out[i] = ((pcm[j] ?? 0) * (1 - f) + (pcm[j + 1] ?? 0) * f) / 32768;
  }
  return out;
}

function wavFile(samples) {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + samples.length * 2, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(RATE, 24);
  header.writeUInt32LE(RATE * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(samples.length * 2, 40);
  const data = Buffer.alloc(samples.length * 2);
  samples.forEach((s, i) => data.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(s * 32767))), i * 2));
  return Buffer.concat([header, data]);
}

const parts = [
  { silence: 1 },
  { text: 'A model server answers every request.' },
  { silence: 1.5 },
  { text: 'Silence in between is not speech.' },
  { silence: 1 },
];
const chunks = [];
let at = 0;
for (const part of parts) {
  const samples = part.text ? speak(part.text) : new Float32Array(Math.round(part.silence * RATE));
  if (part.text) console.log(`speech ${(at / RATE).toFixed(2)}-${((at + samples.length) / RATE).toFixed(2)} s: ${part.text}`);
  chunks.push(samples);
  at += samples.length;
}
const audio = new Float32Array(at);
chunks.reduce((offset, c) => (audio.set(c, offset), offset + c.length), 0);
writeFileSync(join(here, 'speech.wav'), wavFile(audio));
console.log(`speech.wav: ${(audio.length / RATE).toFixed(2)} s at ${RATE} Hz`);

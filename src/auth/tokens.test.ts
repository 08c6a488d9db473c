// Token authorization's keys on a clock the test sets: each API's key, its expiry, the API key that
// never expires, rotation, and the key file TorchServe's users read.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import t, { type Test } from 'tap';
import { TokenStore } from './tokens.js';

const MINUTE = 60_000;
const START = Date.UTC(2026, 11, 6, 12, 0, 0);

interface KeyFile {
  inference: { key: string; 'expiration time': string };
  management: { key: string; 'expiration time': string };
  API: { key: string };
}

/** A store whose keys live `minutes`, made at START; and its key file as read back. */
function store(t: Test, minutes: number): { tokens: TokenStore; keys: () => KeyFile } {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-tokens-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokens = new TokenStore(join(dir, 'key_file.json'), minutes, START);
  return { tokens, keys: () => JSON.parse(readFileSync(tokens.file, 'utf8')) as KeyFile };
}

const bearer = (key: string): string => `Bearer ${key}`;

t.test('each API takes its own key, until it expires; an expired key is a wrong one', async (t) => {
  const { tokens, keys } = store(t, 60);
  const { inference, management } = keys();
  t.ok(tokens.allows('inference', bearer(inference.key), START));
  t.notOk(tokens.allows('inference', bearer(management.key), START), "the other API's key");
  t.notOk(tokens.allows('inference', undefined, START), 'no header');
  t.notOk(tokens.allows('inference', inference.key, START), 'a key without Bearer');
  t.ok(tokens.allows('inference', `Bearer  ${inference.key}`, START), "two spaces before the key, as the contract's pattern allows");
  t.ok(tokens.allows('inference', bearer(inference.key), START + 60 * MINUTE - 1), 'a moment before it expires');
  t.notOk(tokens.allows('inference', bearer(inference.key), START + 60 * MINUTE), 'expired');
  t.equal(inference['expiration time'], new Date(START + 60 * MINUTE).toISOString(), 'the key file says when');
});

t.test('rotation: a new key with a new expiry, the old one refused, the other kept; the API key never expires', async (t) => {
  const { tokens, keys } = store(t, 1);
  const before = keys();
  const later = START + 10 * MINUTE;
  t.ok(tokens.allowsApiKey(bearer(before.API.key)), 'the API key, long after every other expired');
  const answer = tokens.refresh('inference', later);
  const after = keys();
  t.same(answer, after.inference, 'answers the new key as the key file has it');
  t.not(after.inference.key, before.inference.key);
  t.equal(after.management.key, before.management.key, 'the other key is kept');
  t.notOk(tokens.allows('inference', bearer(before.inference.key), later), 'old key refused');
  t.ok(tokens.allows('inference', bearer(after.inference.key), later), 'new key works');
  t.equal(tokens.authorization('inference'), bearer(after.inference.key), "the server's own requests send the live key");
});

t.test('the key file is readable by its owner only, and removed on request', async (t) => {
  const { tokens } = store(t, 60);
  t.equal(statSync(tokens.file).mode & 0o777, 0o600);
  t.match(Object.keys(JSON.parse(readFileSync(tokens.file, 'utf8'))), ['management', 'inference', 'API']);
  tokens.remove();
  t.throws(() => statSync(tokens.file), { code: 'ENOENT' });
});

// Users' scripts (and test/faults/handler-keys) read key_file.json as soon as it exists; written in
// place, a read between the file's truncation and its write found it empty.
t.test('a reader never sees the key file part-written, however often the keys rotate', async (t) => {
  const { tokens } = store(t, 60);
  const reader = new Worker(
    `const { readFileSync } = require('node:fs');
     const { parentPort, workerData } = require('node:worker_threads');
     let reads = 0, partial = 0, stop = false;
     parentPort.on('message', () => { stop = true; });
     parentPort.postMessage('reading');
     (function read() {
       for (let i = 0; i < 100; i++, reads++) try { JSON.parse(readFileSync(workerData, 'utf8')); } catch { partial++; }
       if (stop || reads >= 200000) parentPort.postMessage({ reads, partial }); else setImmediate(read);
     })();`,
    { eval: true, workerData: tokens.file },
  );
  t.teardown(() => reader.terminate());
  await new Promise((resolve) => reader.once('message', resolve));
  for (let i = 0; i < 300; i++) tokens.refresh(i % 2 === 0 ? 'inference' : 'management');
  reader.postMessage('stop');
  const { reads, partial } = await new Promise<{ reads: number; partial: number }>((resolve) => reader.once('message', resolve));
  t.ok(reads > 0, `the reader read the file ${reads} times while it was rewritten 300 times`);
  t.equal(partial, 0, 'every read was a whole key file');
  t.equal(statSync(tokens.file).mode & 0o777, 0o600, 'still readable by its owner alone');
});

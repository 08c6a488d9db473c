// A registered archive is untrusted input. Generated hostile archives (zip and tar.gz: traversal,
// absolute paths, links, devices, bombs by size, by count and by ratio, manifests pointing out,
// non-archives, truncated archives) are registered one after another against one running server,
// which must refuse each with a 4xx JSON, stay up, keep answering another model throughout,
// write nothing outside its directories and leave no disk behind. The archives are written byte
// by byte here (zip local headers and central directory, tar headers), so each can say exactly
// what an attacker's would; names and contents come from a seeded generator (HOSTILE_SEED).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { deflateRawSync, gzipSync } from 'node:zlib';
import t from 'tap';
import { MODELS_ROOT } from '../dist/src/archive/extract.js';
import { createArchive } from '../dist/src/archive/write.js';
import { buildMnistMar, errorBody, MNIST_DIR, seededRandom, startTestServer, tempDir, waitFor } from './helpers.js';

const SEED = Number(process.env.HOSTILE_SEED ?? 20261202);
t.comment(`HOSTILE_SEED=${SEED}`);

const random = seededRandom(SEED);
const token = (): string =>
  Math.floor(random() * 2 ** 32)
    .toString(16)
    .padStart(8, '0');
/** A name no other run would use, so "nothing written outside" can look for it. */
const CANARY = `hostile-canary-${SEED}-${token()}`;

const manifest = (model: Record<string, string> = {}): Buffer =>
  Buffer.from(
    JSON.stringify({
      runtime: 'python',
      model: { modelName: 'hostile', handler: 'base_handler', modelVersion: '1.0', serializedFile: 'model.onnx', ...model },
    }),
  );

interface ZipEntry {
  name: string;
  data?: Buffer;
  /** The sizes the headers claim; the real ones by default. */
  declaredSize?: number;
  /** Unix mode in the external attributes (0o120777 a symlink). */
  mode?: number;
  deflate?: boolean;
}

const deflatedOnce = new WeakMap<Buffer, Buffer>();

/** `raw` deflated, once per buffer: every zip here carries the same 1.2 MB model.onnx (30 ms a deflate). */
function deflated(raw: Buffer): Buffer {
  let body = deflatedOnce.get(raw);
  if (body === undefined) deflatedOnce.set(raw, (body = deflateRawSync(raw)));
  return body;
}

/** A zip as an attacker writes it: every header field as given, no sanitising. */
function zipBytes(entries: ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const raw = e.data ?? Buffer.alloc(0);
    const body = e.deflate ? deflated(raw) : raw;
    const name = Buffer.from(e.name);
    const size = e.declaredSize ?? raw.length;
    const method = e.deflate ? 8 : 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(0, 14); // CRC: checked by readers that trust the data, not ours
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x0314, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((e.mode ?? 0o100644) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += local.length + name.length + body.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

interface TarEntry {
  name: string;
  type?: '0' | '1' | '2' | '3' | '5';
  data?: Buffer;
  linkname?: string;
  /** The size the header claims (octal, so up to 8 GiB); the real one by default. */
  declaredSize?: number;
}

/** A tar (then gzipped) with headers as given: links, devices, sizes that are not there. */
function tarGzBytes(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    const header = Buffer.alloc(512);
    header.write(e.name, 0, 100, 'utf8');
    header.write('0000644\0', 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write(`${(e.declaredSize ?? data.length).toString(8).padStart(11, '0')}\0`, 124);
    header.write('00000000000\0', 136);
    header.write('        ', 148);
    header.write(e.type ?? '0', 156);
    if (e.linkname) header.write(e.linkname, 157, 100, 'utf8');
    header.write('ustar\x0000', 257, 'binary');
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

const onnx = readFileSync(join(MNIST_DIR, 'mnist.onnx'));
const GiB = 1024 ** 3;
const zeros = (n: number): Buffer => Buffer.alloc(n);

/** Every hostile archive: its file name, its bytes, and what the refusal must say. */
function hostileArchives(): Array<{ file: string; bytes: Buffer; message: RegExp }> {
  const escapes = /escapes the model directory|outside the model directory/;
  const zipModel = (extra: ZipEntry[], m?: Record<string, string>): Buffer =>
    zipBytes([{ name: 'MAR-INF/MANIFEST.json', data: manifest(m) }, { name: 'model.onnx', data: onnx, deflate: true }, ...extra]);
  const tarModel = (extra: TarEntry[]): Buffer =>
    tarGzBytes([{ name: 'm/MAR-INF/MANIFEST.json', data: manifest() }, { name: 'm/model.onnx', data: onnx }, ...extra]);
  const valid = zipModel([]);
  const validTar = tarModel([]);
  return [
    { file: 'zip-traversal.mar', bytes: zipModel([{ name: `../../${CANARY}`, data: Buffer.from('pwned') }]), message: escapes },
    { file: 'zip-absolute.mar', bytes: zipModel([{ name: `/tmp/${CANARY}`, data: Buffer.from('pwned') }]), message: escapes },
    { file: 'zip-symlink.mar', bytes: zipModel([{ name: 'link', data: Buffer.from('/etc'), mode: 0o120777 }]), message: escapes },
    { file: 'zip-device.mar', bytes: zipModel([{ name: 'dev', mode: 0o020644 }]), message: escapes },
    // Three entries claiming 4 GiB each: 12 GiB declared, a few MB on disk.
    {
      file: 'zip-bomb-declared.mar',
      bytes: zipModel([0, 1, 2].map((i) => ({ name: `w${i}.bin`, data: zeros(1024 ** 2), declaredSize: 4 * GiB - 1, deflate: true }))),
      message: /max_archive_unpacked_size/,
    },
    // An entry whose header says 1 KiB and whose data inflates to 64 MiB.
    {
      file: 'zip-bomb-lying.mar',
      bytes: zipModel([{ name: 'w.bin', data: zeros(64 * 1024 ** 2), declaredSize: 1024, deflate: true }]),
      message: /Failed to open model archive|more than its index says/,
    },
    { file: 'zip-bomb-ratio.mar', bytes: zipModel([{ name: 'w.bin', data: zeros(16 * 1024 ** 2), deflate: true }]), message: /max_archive_compression_ratio/ },
    { file: 'zip-bomb-count.mar', bytes: zipModel(Array.from({ length: 300 }, (_, i) => ({ name: `f/${i}-${token()}` }))), message: /max_archive_entries/ },
    { file: 'zip-manifest-out.mar', bytes: zipModel([], { serializedFile: `../../../${CANARY}.onnx` }), message: /model\.serializedFile names a file outside/ },
    { file: 'zip-manifest-absolute.mar', bytes: zipModel([], { configFile: '/etc/passwd' }), message: /model\.configFile names a file outside/ },
    { file: 'not-a-zip.mar', bytes: Buffer.from(Array.from({ length: 4096 }, () => Math.floor(random() * 256))), message: /Failed to open model archive/ },
    { file: 'empty.mar', bytes: Buffer.alloc(0), message: /Failed to open model archive/ },
    { file: 'zip-truncated.mar', bytes: valid.subarray(0, Math.floor(valid.length / 2)), message: /Failed to open model archive/ },
    { file: 'tar-traversal.tar.gz', bytes: tarModel([{ name: `m/../../${CANARY}`, data: Buffer.from('pwned') }]), message: escapes },
    { file: 'tar-absolute.tar.gz', bytes: tarModel([{ name: `/tmp/${CANARY}`, data: Buffer.from('pwned') }]), message: escapes },
    { file: 'tar-symlink.tar.gz', bytes: tarModel([{ name: 'm/link', type: '2', linkname: '/etc/passwd' }]), message: escapes },
    { file: 'tar-hardlink.tar.gz', bytes: tarModel([{ name: 'm/hard', type: '1', linkname: '/etc/passwd' }]), message: escapes },
    { file: 'tar-device.tar.gz', bytes: tarModel([{ name: 'm/dev', type: '3' }]), message: escapes },
    // A header claiming 8 GiB: refused at the header, before any of it is read.
    { file: 'tar-bomb-declared.tar.gz', bytes: tarModel([{ name: 'm/w.bin', declaredSize: 8 * GiB - 1 }]), message: /max_archive_unpacked_size/ },
    // A .tar.gz compresses as one stream: 32 MiB of zeros in a few KiB.
    {
      file: 'tar-bomb-ratio.tar.gz',
      bytes: tarGzBytes([
        { name: 'm/MAR-INF/MANIFEST.json', data: manifest() },
        { name: 'm/w.bin', data: zeros(32 * 1024 ** 2) },
      ]),
      message: /max_archive_compression_ratio|max decompression ratio exceeded/,
    },
    { file: 'tar-bomb-count.tar.gz', bytes: tarModel(Array.from({ length: 300 }, (_, i) => ({ name: `m/f${i}` }))), message: /max_archive_entries/ },
    {
      file: 'not-a-tar.tar.gz',
      bytes: gzipSync(Buffer.from(Array.from({ length: 4096 }, () => Math.floor(random() * 256)))),
      message: /Failed to open model archive/,
    },
    { file: 'tar-truncated.tar.gz', bytes: validTar.subarray(0, Math.floor(validTar.length / 2)), message: /Failed to open model archive/ },
  ];
}

/**
 * The canary's files under `root`, for "nothing was written outside". Every hostile name climbs
 * (`../`) from a directory it is resolved against (`bases`: the store, an extraction directory)
 * or is absolute, `/tmp/<canary>`: whatever it writes lands no deeper than those, so the search
 * stops a level below the deepest (with a level to spare), not in the whole of a shared /tmp
 * (590,000 entries and 3 CPU-s on the test machine).
 */
function findCanary(root: string, bases: string[]): string[] {
  const depth = Math.max(...bases.map((base) => relative(root, base).split(sep).length)) + 2;
  const r = spawnSync('find', [root, '-xdev', '-maxdepth', String(depth), '-name', `${CANARY}*`], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean);
}

t.test('hostile archives, one after another against one server: each a 4xx JSON, the server up and serving, nothing written, no disk left', async (t) => {
  const archives = hostileArchives();
  const server = await startTestServer(t, {
    prepare: (store) => {
      // examples/mnist archived with no model-config.yaml: the shipped mnist.mar's warm-up (up to
      // 400 batches, 0.5 CPU-s) is nothing this model, which only answers meanwhile, is here for.
      buildMnistMar(store);
      for (const a of archives) writeFileSync(join(store, a.file), a.bytes);
    },
    // Small limits, so each bomb trips its own: 256 MiB, 200 entries, a ratio of 100.
    properties: {
      load_models: 'mnist.mar',
      max_archive_unpacked_size: String(256 * 1024 ** 2),
      max_archive_entries: '200',
      max_archive_compression_ratio: '100',
    },
  });
  await waitFor(async () => (await fetch(`${server.urls.inference}/ping`)).ok, 30_000, 'mnist');
  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  // This process's extraction directories (named <pid>-...): other test files, run at the same
  // time, add and remove their own.
  const extractedHere = (): string[] =>
    existsSync(MODELS_ROOT)
      ? readdirSync(MODELS_ROOT)
          .filter((d) => d.startsWith(`${process.pid}-`))
          .sort()
      : [];
  const extractedBefore = extractedHere();

  // Another model answers all along: a prediction every 20 ms while the archives are registered.
  const answers: string[] = [];
  let registering = true;
  const background = (async () => {
    while (registering) {
      const res = await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'PUT', body: seven }).catch((err: Error) => err);
      answers.push(res instanceof Error ? res.message : `${res.status} ${await res.text()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  for (const archive of archives) {
    const res = await fetch(`${server.urls.management}/models?url=${archive.file}&initial_workers=1&synchronous=true`, { method: 'POST' });
    t.ok(res.status >= 400 && res.status < 500, `${archive.file}: ${res.status}`);
    const body = await errorBody(res);
    t.match(body, { code: res.status, type: 'InvalidModelException', message: archive.message }, archive.file);
  }
  registering = false;
  await background;

  t.ok(
    answers.length > 0 && answers.every((a) => a === '200 7'),
    `mnist answered 7 all along (${answers.length} predictions): ${[...new Set(answers)].join(', ')}`,
  );
  t.same(
    await (await fetch(`${server.urls.management}/models`)).json(),
    { models: [{ modelName: 'mnist', modelUrl: 'mnist.mar' }] },
    'nothing else registered',
  );
  t.same(extractedHere(), extractedBefore, 'no extraction directory left behind');
  t.same(findCanary('/tmp', [server.store, join(MODELS_ROOT, 'model')]), [], 'nothing written outside the model directories');
  t.same(readdirSync(server.store).sort(), ['mnist.mar', ...archives.map((a) => a.file)].sort(), 'the model store is as it was');
});

t.test('a 12 GiB-declared zip bomb and a symlinked .tar.gz, against the default limits: refused with 400, /ping answering throughout', async (t) => {
  const bomb = zipBytes([
    { name: 'MAR-INF/MANIFEST.json', data: manifest() },
    ...[0, 1, 2].map((i) => ({ name: `w${i}.bin`, data: zeros(1024 ** 2), declaredSize: 4 * GiB - 1, deflate: true })),
  ]);
  const symlinked = tarGzBytes([
    { name: 'm/MAR-INF/MANIFEST.json', data: manifest() },
    { name: 'm/link', type: '2', linkname: '/etc/passwd' },
  ]);
  const server = await startTestServer(t, {
    prepare: (store) => {
      writeFileSync(join(store, 'bomb.mar'), bomb);
      writeFileSync(join(store, 'symlinked.tar.gz'), symlinked);
    },
  });
  t.ok(bomb.length < 4 * 1024 ** 2, `the bomb is ${bomb.length} bytes on disk`);
  let pinging = true;
  const pings: number[] = [];
  const pinger = (async () => {
    while (pinging) {
      pings.push((await fetch(`${server.urls.inference}/ping`)).status);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const started = performance.now();
  const refused = await fetch(`${server.urls.management}/models?url=bomb.mar`, { method: 'POST' });
  t.comment(`the 12 GiB-declared bomb was refused in ${Math.round(performance.now() - started)} ms`);
  t.equal(refused.status, 400);
  t.match((await errorBody(refused)).message, /^Model archive bomb\.mar .*\((max_archive_unpacked_size|max_archive_compression_ratio)\)$/);
  const link = await fetch(`${server.urls.management}/models?url=symlinked.tar.gz`, { method: 'POST' });
  t.same(await errorBody(link), { code: 400, type: 'InvalidModelException', message: 'Archive entry escapes the model directory: m/link' });
  pinging = false;
  await pinger;
  t.ok(
    pings.every((s) => s === 200),
    `every /ping answered 200 (${pings.length})`,
  );
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200, 'the server is up');
});

t.test('archives built and extracted are not world-writable', async (t) => {
  const dir = tempDir(t);
  const mnist = {
    modelName: 'modes',
    version: '1.0',
    serializedFile: join(MNIST_DIR, 'mnist.onnx'),
    handler: join(MNIST_DIR, 'mnist_handler.ts'),
    exportPath: dir,
    force: true,
  };
  const mar = createArchive(mnist);
  t.equal(statSync(mar).mode & 0o002, 0, `the .mar is ${(statSync(mar).mode & 0o777).toString(8)}`);
  const tgz = createArchive({ ...mnist, archiveFormat: 'tgz' });
  t.equal(statSync(tgz).mode & 0o002, 0, 'the .tar.gz too');
  const server = await startTestServer(t, {
    prepare: (store) => {
      copyFileSync(mar, join(store, 'modes.mar'));
      copyFileSync(tgz, join(store, 'modest.tar.gz'));
    },
  });
  for (const url of ['modes.mar', 'modest.tar.gz']) {
    const res = await fetch(`${server.urls.management}/models?url=${url}&model_name=${url.replace(/\W/g, '_')}&initial_workers=0`, { method: 'POST' });
    t.equal(res.status, 200, url);
  }
  const models = server.registry.all();
  t.equal(models.length, 2);
  for (const model of models) {
    for (const file of ['model.onnx', 'mnist.onnx', 'mnist_handler.js', 'MAR-INF/MANIFEST.json'].map((f) => join(model.spec.dir, f)).filter(existsSync)) {
      t.equal(statSync(file).mode & 0o002, 0, `${file.slice(model.spec.dir.length + 1)} of ${model.name} is ${(statSync(file).mode & 0o777).toString(8)}`);
    }
  }
});

t.test("extraction directories of servers that are gone are removed at start; a live server's are kept", async (t) => {
  const exited = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const deadPid = Number(exited.stdout);
  const dead = join(MODELS_ROOT, `${deadPid}-${token()}${token()}${token()}${token()}`);
  const live = join(MODELS_ROOT, `${process.pid}-${token()}${token()}${token()}${token()}`);
  for (const dir of [dead, live]) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model.onnx'), 'left behind');
  }
  t.teardown(() => rmSync(live, { recursive: true, force: true }));
  await startTestServer(t);
  t.notOk(existsSync(dead), `${deadPid}'s directory removed`);
  t.ok(existsSync(live), "the live process's directory kept");
});

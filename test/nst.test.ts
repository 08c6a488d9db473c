// Style transfer (examples/nst) over HTTP as the seed app calls it: a content image and a style
// image as multipart fields, a PNG back; the optimisation really lowers the style loss.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { buildNstMar, NST_DIR, errorBody, sharedServer, startTestServer } from './helpers.js';

const content = readFileSync(join(NST_DIR, 'content-house.png'));

/** One server for the file: each test only asks it for predictions (its worker loads nst's two models once). */
const serve = sharedServer((t) =>
  startTestServer(t, {
    prepare: (store) => buildNstMar(store),
    properties: { load_models: 'nst.mar' },
  }),
);

function form(fields: Record<string, string | Buffer>): FormData {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === 'string') f.append(k, v);
    else f.append(k, new Blob([v]), `${k}.png`);
  }
  return f;
}

t.test('content + uploaded style image in, a stylized PNG of the right size out, style loss down 10x', async (t) => {
  const server = await serve();
  const style = await sharp(join(NST_DIR, 'styles', 'style-strokes.png'))
    .jpeg()
    .toBuffer();
  const res = await fetch(`${server.urls.inference}/predictions/nst`, { method: 'POST', body: form({ content, style, steps: '80', size: '128' }) });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'image/png');
  const png = Buffer.from(await res.arrayBuffer());
  const meta = await sharp(png).metadata();
  t.same([meta.format, meta.width, meta.height], ['png', 128, 128], 'a PNG, long side = size');
  const original = await sharp(content).resize(128, 128).removeAlpha().raw().toBuffer();
  const stylized = await sharp(png).removeAlpha().raw().toBuffer();
  let diff = 0;
  for (let i = 0; i < original.length; i++) diff += Math.abs(original[i]! - stylized[i]!);
  t.ok(diff / original.length > 10, `not the content image (mean difference ${(diff / original.length).toFixed(1)} of 255)`);
  const [first, last] = res.headers.get('x-style-loss')!.split(' -> ').map(Number) as [number, number];
  t.ok(first / last >= 10, `style loss ${first.toFixed(1)} -> ${last.toFixed(2)} (${(first / last).toFixed(0)}x)`);
});

t.test('a ready style by name, with progress streamed as JSON lines, then the image', async (t) => {
  const server = await serve();
  const res = await fetch(`${server.urls.inference}/predictions/nst`, {
    method: 'POST',
    body: form({ content, style: 'mosaic', steps: '30', size: '64', stream: 'true' }),
  });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'application/x-ndjson');
  const lines = (await res.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; style_loss: number; done?: boolean; image?: string });
  t.same(
    lines.map((l) => l.step),
    [10, 20, 30, 30],
    'progress every 10 steps, then the final line',
  );
  t.ok(lines[0]!.style_loss > lines[2]!.style_loss, 'the loss falls as it streams');
  const last = lines.at(-1)!;
  t.equal(last.done, true);
  t.same((await sharp(Buffer.from(last.image!, 'base64')).metadata()).width, 64, 'the image, base64 PNG');
});

t.test('bad requests are clear 400s and the worker keeps serving', async (t) => {
  const server = await serve();
  const url = `${server.urls.inference}/predictions/nst`;
  const cases: Array<[string, FormData, RegExp]> = [
    ['no content', form({ style: 'mosaic' }), /content image/],
    ['no style', form({ content }), /Send a style/],
    ['unknown ready style', form({ content, style: 'cubism' }), /Unknown style "cubism"/],
    ['steps not a number', form({ content, style: 'mosaic', steps: 'many' }), /steps must be a positive number/],
    ['size out of range', form({ content, style: 'mosaic', size: '4096' }), /size must be a whole number from 64 to 512/],
    ['content not an image', form({ content: Buffer.from('not an image, just some bytes of text'), style: 'mosaic' }), /Invalid image/],
  ];
  for (const [what, body, message] of cases) {
    const res = await fetch(url, { method: 'POST', body });
    t.equal(res.status, 400, what);
    t.match(await errorBody(res), { code: 400, message }, what);
  }
  const ok = await fetch(url, { method: 'POST', body: form({ content, style: 'stripes', steps: '2', size: '64' }) });
  t.equal(ok.status, 200, 'still serving');
});

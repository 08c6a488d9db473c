// Every sample digit of examples/mnist through HTTP, answered with its label.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { buildMnistMar, MNIST_DIR, startTestServer } from './helpers.js';

const digits = readdirSync(join(MNIST_DIR, 'digits'))
  .filter((f) => f.endsWith('.png'))
  .sort();

t.test('the example ships two sample digits of each class', async (t) => {
  t.equal(digits.length, 20);
  t.same(new Set(digits.map((f) => f[0])), new Set('0123456789'));
});

t.test('every sample digit is answered with its label, as a raw body and as a multipart field', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildMnistMar(store),
    properties: { load_models: 'mnist.mar' },
  });
  for (const file of digits) {
    const image = readFileSync(join(MNIST_DIR, 'digits', file));
    const raw = await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'PUT', body: image });
    t.equal(raw.status, 200, `${file} raw status`);
    t.equal(await raw.text(), file[0], `${file} raw body`);

    const form = new FormData();
    form.append('data', new Blob([image], { type: 'image/png' }), file);
    const multipart = await fetch(`${server.urls.inference}/predictions/mnist`, { method: 'POST', body: form });
    t.equal(await multipart.text(), file[0], `${file} multipart body`);
  }
});

// Several versions of one model side by side, a default version, set-default, pagination.
import { join } from 'node:path';
import t from 'tap';
import { buildMnistMar, MNIST_DIR, startTestServer } from './helpers.js';
import { readFileSync } from 'node:fs';

type Describe = Array<{ modelName: string; modelVersion: string; workers: unknown[] }>;

t.test('versions, the default, set-default and unregistering one version', async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => {
      buildMnistMar(store);
      buildMnistMar(store, 'mnist-v2', { modelName: 'mnist-v2', version: '2.0' });
    },
  });
  const mgmt = server.urls.management;
  t.equal((await fetch(`${mgmt}/models?url=mnist.mar&initial_workers=1`, { method: 'POST' })).status, 200);
  const v2 = await fetch(`${mgmt}/models?url=mnist-v2.mar&model_name=mnist&initial_workers=1`, { method: 'POST' });
  t.same(await v2.json(), { status: 'Model "mnist" Version: 2.0 registered with 1 initial workers' });

  const all = (await (await fetch(`${mgmt}/models/mnist/all`)).json()) as Describe;
  t.same(
    all.map((d) => d.modelVersion),
    ['1.0', '2.0'],
  );
  t.equal(((await (await fetch(`${mgmt}/models/mnist`)).json()) as Describe)[0]!.modelVersion, '1.0', 'the first version is the default');
  t.same(await (await fetch(`${mgmt}/models`)).json(), { models: [{ modelName: 'mnist', modelUrl: 'mnist.mar' }] }, 'list shows default versions');

  const seven = readFileSync(join(MNIST_DIR, 'digits', '7_0.png'));
  t.equal(await (await fetch(`${server.urls.inference}/predictions/mnist/2.0`, { method: 'POST', body: seven })).text(), '7', 'a version by URL');

  const set = await fetch(`${mgmt}/models/mnist/2.0/set-default`, { method: 'PUT' });
  t.same(await set.json(), { status: 'Default version successfully updated for model "mnist" to "2.0"' });
  t.equal(((await (await fetch(`${mgmt}/models/mnist`)).json()) as Describe)[0]!.modelVersion, '2.0');
  const badSet = await fetch(`${mgmt}/models/mnist/9.9/set-default`, { method: 'PUT' });
  t.equal(badSet.status, 404);
  t.same(await badSet.json(), { code: 404, type: 'ModelVersionNotFoundException', message: 'Model version 9.9 does not exist for model mnist' });

  const delDefault = await fetch(`${mgmt}/models/mnist`, { method: 'DELETE' });
  t.equal(delDefault.status, 403);
  t.same(await delDefault.json(), { code: 403, type: 'InvalidModelVersionException', message: 'Cannot remove default version for model mnist' });
  t.equal((await fetch(`${mgmt}/models/mnist/1.0`, { method: 'DELETE' })).status, 200, 'a non-default version goes');
  const unknown = await fetch(`${mgmt}/models/mnist/1.0`);
  t.same(await unknown.json(), { code: 404, type: 'ModelVersionNotFoundException', message: 'Model version: 1.0 does not exist for model: mnist' });
  t.equal((await fetch(`${mgmt}/models/mnist`, { method: 'DELETE' })).status, 200, 'the last version goes with the model');
});

t.test('list pages with limit and next_page_token', async (t) => {
  const server = await startTestServer(t, { prepare: (store) => buildMnistMar(store) });
  const mgmt = server.urls.management;
  for (const name of ['c', 'a', 'b']) await fetch(`${mgmt}/models?url=mnist.mar&model_name=${name}`, { method: 'POST' });
  const names = (body: { models: Array<{ modelName: string }> }): string[] => body.models.map((m) => m.modelName);
  const page1 = (await (await fetch(`${mgmt}/models?limit=2`)).json()) as { nextPageToken?: string; models: Array<{ modelName: string }> };
  t.same(names(page1), ['a', 'b']);
  t.equal(page1.nextPageToken, '2');
  const page2 = (await (await fetch(`${mgmt}/models?limit=2&next_page_token=2`)).json()) as typeof page1;
  t.same(names(page2), ['c']);
  t.equal(page2.nextPageToken, undefined, 'no token after the last page');
  const exact = (await (await fetch(`${mgmt}/models?limit=1&next_page_token=2`)).json()) as typeof page1;
  t.equal(exact.nextPageToken, '3', 'an exactly full last page still carries a token, as TorchServe');
  t.same(names((await (await fetch(`${mgmt}/models?limit=-1&next_page_token=-5`)).json()) as typeof page1), ['a', 'b', 'c'], 'bad values fall back');
  t.same(names((await (await fetch(`${mgmt}/models?next_page_token=12`)).json()) as typeof page1), [], 'past the end');
});

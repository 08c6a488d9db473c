// The management API's answers, in process: register, list, describe, scale, set-default and
// unregister with TorchServe's status codes and messages, the model API switch, paging. That
// real worker processes start, scale and fail to load is test/management.test.ts's.
import t from 'tap';
import { errorOf, inProcessServer, storeArchive } from './in-process.js';

type Describe = Array<{ modelName: string; modelVersion: string; loadedAtStartup: boolean; workers: Array<{ status: string }> }>;

t.test('registration answers: 0 workers, asynchronous, missing url, duplicate, unknown file', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  const post = (url: string) => server.management({ method: 'POST', url });
  const zero = await post('/models?url=echo.mar&model_name=idle&initial_workers=0');
  t.same(zero.json(), { status: 'Model "idle" Version: 1.0 registered with 0 initial workers. Use scale workers API to add workers for the model.' });

  const later = await post('/models?url=echo.mar&initial_workers=1&synchronous=false');
  t.same([later.statusCode, later.json()], [202, { status: 'Processing worker updates...' }]);

  const dup = await post('/models?url=echo.mar');
  t.same(errorOf(dup), { code: 409, type: 'ConflictStatusException', message: 'Model version 1.0 is already registered for model echo' });
  t.same(errorOf(await post('/models')), { code: 400, type: 'BadRequestException', message: 'Parameter url is required.' });
  t.same(errorOf(await post('/models?url=')), { code: 404, type: 'ModelNotFoundException', message: 'empty url' });
  t.same(errorOf(await post('/models?url=nothing.mar')), { code: 404, type: 'ModelNotFoundException', message: 'Model not found at: nothing.mar' });

  const list = await server.management({ method: 'GET', url: '/models' });
  t.same(
    list.json(),
    {
      models: [
        { modelName: 'echo', modelUrl: 'echo.mar' },
        { modelName: 'idle', modelUrl: 'echo.mar' },
      ],
    },
    'sorted by name',
  );
});

t.test('register, scale and unregister answers; describe after each', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  const reg = await server.management({ method: 'POST', url: '/models?url=echo.mar&initial_workers=1&synchronous=true' });
  t.equal(reg.body, '{\n  "status": "Model \\"echo\\" Version: 1.0 registered with 1 initial workers"\n}\n', 'Gson-style text, as TorchServe writes it');
  const describe = async (): Promise<Describe[number]> => (await server.management({ method: 'GET', url: '/models/echo' })).json<Describe>()[0]!;
  t.match(await describe(), { modelName: 'echo', modelVersion: '1.0', loadedAtStartup: false, workers: [{ status: 'READY' }] });

  const up = await server.management({ method: 'PUT', url: '/models/echo?min_worker=2&synchronous=true' });
  t.same([up.statusCode, up.json()], [200, { status: 'Workers scaled to 2 for model: echo' }]);
  const versioned = await server.management({ method: 'PUT', url: '/models/echo/1.0?min_worker=2&synchronous=true' });
  t.same(versioned.json(), { status: 'Workers scaled to 2 for model: echo, version: 1.0' });
  t.equal((await describe()).workers.length, 2);

  const invalid = await server.management({ method: 'PUT', url: '/models/echo?min_worker=2&max_worker=1' });
  t.same(errorOf(invalid), { code: 400, type: 'BadRequestException', message: 'max_worker cannot be less than min_worker.' });
  const tooMany = await server.management({ method: 'PUT', url: `/models/echo?min_worker=${server.config.maxWorkersPerModel + 1}` });
  t.equal(tooMany.statusCode, 400, `more than max_workers_per_model: ${tooMany.body}`);

  const down = await server.management({ method: 'PUT', url: '/models/echo?min_worker=0' });
  t.same([down.statusCode, down.json()], [202, { status: 'Processing worker updates...' }]);

  const del = await server.management({ method: 'DELETE', url: '/models/echo' });
  t.same([del.statusCode, del.json()], [200, { status: 'Model "echo" unregistered' }]);
  t.same(errorOf(await server.management({ method: 'GET', url: '/models/echo' })), {
    code: 404,
    type: 'ModelNotFoundException',
    message: 'Model not found: echo',
  });
});

t.test('register and unregister are 405 unless the model API is enabled; describe and scale stay open', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'], properties: { enable_model_api: 'false', load_models: 'echo.mar' } });
  for (const [method, url] of [
    ['POST', '/models?url=echo.mar'],
    ['DELETE', '/models/echo'],
  ] as const) {
    const res = await server.management({ method, url });
    t.same(
      errorOf(res),
      { code: 405, type: 'MethodNotAllowedException', message: 'Requested method is not allowed, please refer to API document.' },
      `${method} ${url}`,
    );
  }
  const [d] = (await server.management({ method: 'GET', url: '/models/echo' })).json<Describe>();
  t.equal(d!.loadedAtStartup, true, 'start-up models are allowed without the model API');
  t.equal((await server.management({ method: 'PUT', url: '/models/echo?min_worker=1' })).statusCode, 202);
  t.equal((await server.management({ method: 'PATCH', url: '/models/echo' })).statusCode, 405, 'other methods are 405');
});

t.test('versions, the default, set-default and unregistering one version', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'], prepare: (store) => storeArchive(store, 'echo-v2', { version: '2.0' }) });
  const call = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string) => server.management({ method, url });
  t.equal((await call('POST', '/models?url=echo.mar&initial_workers=1')).statusCode, 200);
  const v2 = await call('POST', '/models?url=echo-v2.mar&model_name=echo&initial_workers=1');
  t.same(v2.json(), { status: 'Model "echo" Version: 2.0 registered with 1 initial workers' });

  t.same(
    (await call('GET', '/models/echo/all')).json<Describe>().map((d) => d.modelVersion),
    ['1.0', '2.0'],
  );
  const defaultVersion = async (): Promise<string> => (await call('GET', '/models/echo')).json<Describe>()[0]!.modelVersion;
  t.equal(await defaultVersion(), '1.0', 'the first version is the default');
  t.same((await call('GET', '/models')).json(), { models: [{ modelName: 'echo', modelUrl: 'echo.mar' }] }, 'list shows default versions');
  t.equal((await server.inference({ method: 'POST', url: '/predictions/echo/2.0', payload: 'x' })).statusCode, 200, 'a version by URL');

  const set = await call('PUT', '/models/echo/2.0/set-default');
  t.same(set.json(), { status: 'Default version successfully updated for model "echo" to "2.0"' });
  t.equal(await defaultVersion(), '2.0');
  const badSet = await call('PUT', '/models/echo/9.9/set-default');
  t.same(errorOf(badSet), { code: 404, type: 'ModelVersionNotFoundException', message: 'Model version 9.9 does not exist for model echo' });

  const delDefault = await call('DELETE', '/models/echo');
  t.same(errorOf(delDefault), { code: 403, type: 'InvalidModelVersionException', message: 'Cannot remove default version for model echo' });
  t.equal((await call('DELETE', '/models/echo/1.0')).statusCode, 200, 'a non-default version goes');
  const unknown = await call('GET', '/models/echo/1.0');
  t.same(errorOf(unknown), { code: 404, type: 'ModelVersionNotFoundException', message: 'Model version: 1.0 does not exist for model: echo' });
  t.equal((await call('DELETE', '/models/echo')).statusCode, 200, 'the last version goes with the model');
});

t.test('list pages with limit and next_page_token', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  for (const name of ['c', 'a', 'b']) await server.management({ method: 'POST', url: `/models?url=echo.mar&model_name=${name}&initial_workers=0` });
  const page = async (query: string): Promise<{ names: string[]; nextPageToken?: string }> => {
    const body = (await server.management({ method: 'GET', url: `/models${query}` })).json<{ nextPageToken?: string; models: Array<{ modelName: string }> }>();
    return { names: body.models.map((m) => m.modelName), nextPageToken: body.nextPageToken };
  };
  t.same(await page('?limit=2'), { names: ['a', 'b'], nextPageToken: '2' });
  t.same(await page('?limit=2&next_page_token=2'), { names: ['c'], nextPageToken: undefined }, 'no token after the last page');
  t.equal((await page('?limit=1&next_page_token=2')).nextPageToken, '3', 'an exactly full last page still carries a token, as TorchServe');
  t.same((await page('?limit=-1&next_page_token=-5')).names, ['a', 'b', 'c'], 'bad values fall back');
  t.same((await page('?next_page_token=12')).names, [], 'past the end');
});

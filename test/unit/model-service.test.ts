// The model service in process: each management change is one event, told in the order the calls
// made them, and a listener that fails (the config snapshot the disk did not take) is the call's
// answer while the change stays in effect. That REST and gRPC make the same events with real
// workers is test/model-service.test.ts's.
import t from 'tap';
import { tsError } from '../../src/errors.js';
import type { ModelEvent } from '../../src/models/model-service.js';
import { errorOf, inProcessServer, type InProcessServer } from './in-process.js';

/** The service's events from now on, as `kind name version`. */
function follow(server: InProcessServer): string[] {
  const seen: string[] = [];
  server.service.on((e: ModelEvent) => {
    const [name, version] = 'model' in e ? [e.model.name, e.model.version] : [e.name, e.version];
    seen.push(`${e.kind} ${name} ${version}`);
  });
  return seen;
}

t.test('register, scale, set-default and unregister: one event each, in order', async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  const seen = follow(server);
  const call = async (method: 'POST' | 'PUT' | 'DELETE', url: string): Promise<void> => {
    const res = await server.management({ method, url });
    t.ok(res.statusCode < 300, `${method} ${url}: ${res.statusCode}`);
  };
  await call('POST', '/models?url=echo.mar&initial_workers=1&synchronous=true');
  await call('PUT', '/models/echo?min_worker=2&synchronous=true');
  await call('PUT', '/models/echo/1.0/set-default');
  await call('DELETE', '/models/echo/1.0');
  t.same(seen, ['registered echo 1.0', 'scaled echo 1.0', 'default-changed echo 1.0', 'unregistered echo 1.0']);
  t.equal((await server.management({ method: 'PUT', url: '/models/nope?min_worker=1' })).statusCode, 404);
  t.equal(seen.length, 4, 'a call that fails changes nothing and tells nothing');
});

t.test("a listener's failure is the call's answer (507); the change stays in effect", async (t) => {
  const server = await inProcessServer(t, { models: ['echo'] });
  server.service.on(() => {
    throw tsError('TSS_ERR_SNAPSHOT_NOT_SAVED', 'the disk is full');
  });
  const res = await server.management({ method: 'POST', url: '/models?url=echo.mar&initial_workers=1&synchronous=true' });
  t.match(errorOf(res), { code: 507, message: /the disk is full/ });
  const described = await server.management({ method: 'GET', url: '/models/echo' });
  t.equal(described.statusCode, 200, 'registered all the same');
  t.match(described.json(), [{ workers: [{ status: 'READY' }] }], 'its worker started');
});

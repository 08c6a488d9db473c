// REST and gRPC management are two wires onto one model service (models/model-service.ts): the
// changes either makes are the same events, in the order they were made, which the metrics (and
// the config snapshot) follow; a registration whose workers fail is undone by the same path,
// and says so with an event of its own.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import type { ModelEvent } from '../dist/src/models/model-service.js';
import { grpcClient, unaryCall } from './grpc-client.js';
import { buildMar, FIXTURES, startTestServer, type TestServer } from './helpers.js';

function serve(t: Parameters<typeof startTestServer>[0]): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => {
      buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
      const failing = join(store, '..', 'failing.ts');
      writeFileSync(failing, "export default class Failing { initialize(): void { throw new Error('no weights'); } handle(): never[] { return []; } }\n");
      buildMar(store, { modelName: 'failing', version: '1.0', handler: failing });
    },
  });
}

/** The events from now on, as `kind name version`. */
function follow(server: TestServer): string[] {
  const seen: string[] = [];
  server.service.on((e: ModelEvent) => {
    const [name, version] = 'model' in e ? [e.model.name, e.model.version] : [e.name, e.version];
    seen.push(`${e.kind} ${name} ${version}`);
  });
  return seen;
}

async function workersReadyListed(server: TestServer, model: string): Promise<boolean> {
  const text = await (await fetch(`${server.urls.metrics}/metrics`)).text();
  return text.includes(`ts_workers_ready{model_name="${model}"`);
}

t.test('a change made over REST or over gRPC is one event of the one service, in order', async (t) => {
  const server = await serve(t);
  const events = follow(server);
  const management = grpcClient(t, server.urls.grpcManagement, 'management.proto', 'org.pytorch.serve.grpc.management.ManagementAPIsService');
  const rest = (method: string, path: string): Promise<Response> => fetch(`${server.urls.management}${path}`, { method });

  t.equal((await rest('POST', '/models?url=echo.mar&initial_workers=1&synchronous=true')).status, 200, 'REST registers');
  t.ok(await workersReadyListed(server, 'echo'), 'the metrics follow the registration');
  const scaled = await unaryCall(management, 'ScaleWorker', { model_name: 'echo', min_worker: 2, max_worker: 2, synchronous: true });
  t.same(scaled, { value: { msg: 'Workers scaled to 2 for model: echo' }, code: grpc.status.OK }, 'gRPC scales');
  const defaulted = await unaryCall(management, 'SetDefault', { model_name: 'echo', model_version: '1.0' });
  t.equal(defaulted.code, grpc.status.OK, 'gRPC sets the default');
  t.equal((await rest('DELETE', '/models/echo')).status, 200, 'REST unregisters');
  t.notOk(await workersReadyListed(server, 'echo'), 'the metrics follow the unregistration');
  // initial_workers 0 is "not set" over gRPC: default_workers_per_model starts, in the background.
  const registered = await unaryCall(management, 'RegisterModel', { url: 'echo.mar', initial_workers: 0 });
  t.same(registered, { value: { msg: 'Processing worker updates...' }, code: grpc.status.OK }, 'gRPC registers');
  const unknown = await unaryCall(management, 'ScaleWorker', { model_name: 'nope', min_worker: 1 });
  t.same([unknown.code, unknown.details], [grpc.status.NOT_FOUND, 'Model not found: nope'], 'a refused call changes nothing');

  t.same(events, ['registered echo 1.0', 'scaled echo 1.0', 'default-changed echo 1.0', 'unregistered echo 1.0', 'registered echo 1.0']);
});

t.test('a registration whose workers fail to load is undone, over either wire: registered, then unregistered', async (t) => {
  const server = await serve(t);
  const events = follow(server);
  const management = grpcClient(t, server.urls.grpcManagement, 'management.proto', 'org.pytorch.serve.grpc.management.ManagementAPIsService');
  const res = await fetch(`${server.urls.management}/models?url=failing.mar&initial_workers=1&synchronous=true`, { method: 'POST' });
  t.equal(res.status, 500, 'REST');
  const call = await unaryCall(management, 'RegisterModel', { url: 'failing.mar', initial_workers: 1, synchronous: true });
  t.same([call.code, call.details], [grpc.status.INTERNAL, 'Failed to start workers for model failing version: 1.0'], 'gRPC');
  t.same(events, ['registered failing 1.0', 'unregistered failing 1.0', 'registered failing 1.0', 'unregistered failing 1.0']);
  t.same(
    server.registry.all().map((m) => m.name),
    [],
    'nothing of it is left registered',
  );
  t.notOk(await workersReadyListed(server, 'failing'), 'nor in the metrics');
});

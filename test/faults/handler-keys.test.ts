// A handler is the model's code, not the server's: with token authorization on, the client's
// Authorization header carries the inference key, which must not reach it, over REST or gRPC.
// With token authorization off the header is the client's own business and goes along, as in
// TorchServe. With worker_permission on, a handler cannot read key_file.json either.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { grpcClient, unaryCall } from '../grpc-client.js';
import { buildMar, FIXTURES, ROOT, startTestServer, tempDir, waitFor, waitReady, writeUserConfig, type TestServer } from '../helpers.js';

const TSSERVE = join(ROOT, 'bin', 'tsserve.js');
import { survived } from './survival.js';

async function serveAnswerModel(t: Test, tokens: boolean): Promise<TestServer> {
  const server = await startTestServer(t, {
    prepare: (store) => buildMar(store, { modelName: 'answer', version: '1.0', handler: join(FIXTURES, 'answer_handler.ts') }),
    properties: { load_models: 'answer.mar', disable_token_authorization: String(!tokens) },
  });
  return server;
}

function key(server: Pick<TestServer, 'dir'>, kind: 'inference' | 'management'): string {
  return (JSON.parse(readFileSync(join(server.dir, 'key_file.json'), 'utf8')) as Record<typeof kind, { key: string }>)[kind].key;
}

/** waitReady with the management key. */
async function workerReady(server: TestServer): Promise<void> {
  const headers = { authorization: `Bearer ${key(server, 'management')}` };
  await waitFor(
    async () => {
      const [d] = (await (await fetch(`${server.urls.management}/models/answer`, { headers })).json()) as Array<{ workers: Array<{ status: string }> }>;
      return d?.workers.some((w) => w.status === 'READY') === true;
    },
    30_000,
    'answer ready',
  );
}

/** The request headers the handler saw, over REST. */
async function seenOverRest(server: Pick<TestServer, 'urls'>, authorization: string, read?: string): Promise<Seen> {
  const res = await fetch(`${server.urls.inference}/predictions/answer`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json', 'x-client': 'yes' },
    body: JSON.stringify({ read }),
  });
  if (res.status !== 200) throw new Error(`${res.status} ${await res.text()}`);
  return (await res.json()) as Seen;
}

interface Seen {
  headers: Record<string, string>;
  read?: string;
}

/** The request headers (metadata) the handler saw, over gRPC. */
async function seenOverGrpc(t: Test, server: TestServer, authorization: string): Promise<Record<string, string>> {
  const client = grpcClient(t, server.urls.grpcInference, 'inference.proto', 'org.pytorch.serve.grpc.inference.InferenceAPIsService');
  const metadata = new grpc.Metadata();
  metadata.set('authorization', authorization);
  metadata.set('x-client', 'yes');
  const answer = await unaryCall(client, 'Predictions', { model_name: 'answer', input: { body: Buffer.from('{}') } }, metadata);
  if (!answer.value) throw new Error(`${answer.code} ${answer.details}`);
  return (JSON.parse(Buffer.from(answer.value.prediction as Uint8Array).toString('utf8')) as Seen).headers;
}

t.test('with token authorization on, no handler sees the inference key', async (t) => {
  const server = await serveAnswerModel(t, true);
  const authorization = `Bearer ${key(server, 'inference')}`;
  await workerReady(server);
  const rest = (await seenOverRest(server, authorization)).headers;
  t.equal(rest['x-client'], 'yes', 'REST: the handler sees the client headers');
  t.equal(rest.authorization, undefined, 'REST: but not Authorization');
  t.notOk(JSON.stringify(rest).includes(key(server, 'inference')), 'REST: nor the key anywhere');
  const overGrpc = await seenOverGrpc(t, server, authorization);
  t.equal(overGrpc['x-client'], 'yes', 'gRPC: the handler sees the call metadata');
  t.equal(overGrpc.authorization, undefined, 'gRPC: but not authorization');
  const management = `Bearer ${key(server, 'management')}`;
  await survived(t, server, { models: ['answer'], sent: 2, answered: 2, authorization: { inference: authorization, management } });
});

t.test('with token authorization off, Authorization is the client header it was and goes along', async (t) => {
  const server = await serveAnswerModel(t, false);
  await waitReady(server.urls.management, 'answer');
  t.equal((await seenOverRest(server, 'Bearer users-own')).headers.authorization, 'Bearer users-own', 'REST');
  t.equal((await seenOverGrpc(t, server, 'Bearer users-own')).authorization, 'Bearer users-own', 'gRPC');
  await survived(t, server, { models: ['answer'], sent: 2, answered: 2 });
});

t.test('with worker_permission on, a handler cannot read key_file.json, and reads its own model directory', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'model-store'));
  buildMar(join(dir, 'model-store'), { modelName: 'answer', version: '1.0', handler: join(FIXTURES, 'answer_handler.ts') });
  const urls = await writeUserConfig(dir, ['worker_permission=true', 'default_workers_per_model=1']);
  // `env -u`: the test runner preloads its coverage hooks through NODE_OPTIONS, which the
  // permission model refuses (process.binding); a user's server starts without them.
  const child = spawn(
    'env',
    ['-u', 'NODE_OPTIONS', process.execPath, TSSERVE, '--start', '--foreground', '--ncs', '--model-store', 'model-store', '--models', 'answer=answer.mar'],
    {
      cwd: dir,
      env: { ...process.env, TMPDIR: dir },
      stdio: 'ignore',
    },
  );
  t.teardown(() => child.kill('SIGKILL'));
  await waitFor(() => existsSync(join(dir, 'key_file.json')), 30_000, 'key file written');
  // The CLI's server: survived() reads only its REST addresses.
  const server = { urls: { ...urls, grpcInference: '', grpcManagement: '', kserve: undefined, grpcKserve: undefined } };
  const inference = `Bearer ${key({ dir }, 'inference')}`;
  const management = `Bearer ${key({ dir }, 'management')}`;
  await waitFor(
    async () => (await fetch(`${urls.inference}/ping`, { headers: { authorization: inference } }).catch(() => undefined))?.status === 200,
    30_000,
    'server up',
  );
  const keyFile = await seenOverRest(server, inference, join(dir, 'key_file.json'));
  t.equal(keyFile.read, 'refused: ERR_ACCESS_DENIED', 'key_file.json is refused to the handler');
  const config = await seenOverRest(server, inference, join(dir, 'config.properties'));
  t.equal(config.read, 'refused: ERR_ACCESS_DENIED', "so is the server's configuration");
  const described = (await (await fetch(`${urls.management}/models/answer`, { headers: { authorization: management } })).json()) as Array<{ modelUrl: string }>;
  t.equal(described[0]?.modelUrl, 'answer.mar');
  const own = await seenOverRest(server, inference, 'MAR-INF/MANIFEST.json');
  t.match(own.read, /^\{/, "the model's own files are readable (its directory is the working directory)");
  await survived(t, server, { models: ['answer'], sent: 3, answered: 3, serverPid: child.pid, authorization: { inference, management } });
});

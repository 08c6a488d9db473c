// A model name (and version) is written into URLs, log lines and describe answers, so the front
// end takes only what TorchServe's archiver takes: ^[A-Za-z0-9][A-Za-z0-9_\-.]*$, up to 255
// characters. A name with a line break once forged lines in ts_log.log; a 1,200-character one
// registered and then answered 414 to every call that named it, unregister included. Every way a
// name arrives is checked: the register API (REST and gRPC), `--models name=...`, the manifest.
import { join } from 'node:path';
import t from 'tap';
import { grpcClient, unaryCall } from '../grpc-client.js';
import { buildMar, errorBody, FIXTURES, startTestServer, type TestServer } from '../helpers.js';
import { survived } from './survival.js';

/** A line a name would forge in the server log: its timestamp is one no real line has. */
const FORGED = '2000-01-01T00:00:00,000 [ERROR] main tsserve - FORGED';
const NAME_MESSAGE = 'Model name contains special characters.\nThe allowed regular expression filter for model name is: ^[A-Za-z0-9][A-Za-z0-9_\\-.]*$';

const BAD_NAMES: ReadonlyArray<{ what: string; name: string; message: string }> = [
  { what: 'a newline and a forged log line', name: `bad\n${FORGED}`, message: NAME_MESSAGE },
  { what: 'a carriage return', name: `bad\r${FORGED}`, message: NAME_MESSAGE },
  { what: '1,200 characters', name: 'a'.repeat(1200), message: 'Model name is longer than 255 characters.' },
  { what: '256 characters', name: 'a'.repeat(256), message: 'Model name is longer than 255 characters.' },
  { what: 'a slash', name: 'a/b', message: NAME_MESSAGE },
  { what: 'unicode', name: 'mödel', message: NAME_MESSAGE },
  { what: 'a leading dot', name: '.hidden', message: NAME_MESSAGE },
  { what: 'a leading dash', name: '-dash', message: NAME_MESSAGE },
  { what: 'a space', name: 'a b', message: NAME_MESSAGE },
];

async function serveNames(t: Parameters<typeof survived>[0], log: string[], properties: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer(t, {
    prepare: (store) => {
      buildMar(store, { modelName: 'echo', version: '1.0', handler: join(FIXTURES, 'echo_handler.ts') });
      buildMar(store, { modelName: 'badversion', version: `1.0\n${FORGED}`, handler: join(FIXTURES, 'echo_handler.ts') });
    },
    properties,
    serverLog: (line) => log.push(line),
    level: 'info',
  });
}

function register(server: TestServer, query: Record<string, string>): Promise<Response> {
  const params = new URLSearchParams({ synchronous: 'true', initial_workers: '1', ...query });
  return fetch(`${server.urls.management}/models?${params}`, { method: 'POST', signal: AbortSignal.timeout(60_000) });
}

/** The server log's lines that begin as the forged one does. */
function forgedLines(log: string[]): string[] {
  return log
    .join('')
    .split(/\r\n|\r|\n|\u2028|\u2029|\u0085/)
    .filter((line) => line.startsWith('2000-01-01'));
}

t.test('names TorchServe would refuse are refused with 400 and its message; none reaches the log as a line', async (t) => {
  const log: string[] = [];
  const server = await serveNames(t, log);
  let sent = 0;
  let answered = 0;
  for (const bad of BAD_NAMES) {
    sent++;
    const res = await register(server, { url: 'echo.mar', model_name: bad.name });
    answered++;
    t.equal(res.status, 400, `${bad.what}: 400`);
    t.same(await errorBody(res), { code: 400, type: 'BadRequestException', message: bad.message }, `${bad.what}: TorchServe's message`);
  }
  sent++;
  const version = await register(server, { url: 'badversion.mar' });
  answered++;
  t.equal(version.status, 400, 'a manifest version with a line break: 400');
  t.match((await errorBody(version)).message, /^Model version contains special characters/, "a manifest version: the version's message");

  const management = grpcClient(t, server.urls.grpcManagement, 'management.proto', 'org.pytorch.serve.grpc.management.ManagementAPIsService');
  const grpc = await unaryCall(management, 'RegisterModel', { url: 'echo.mar', model_name: `bad\n${FORGED}`, synchronous: true, initial_workers: 1 });
  t.match(grpc.details, /^Model name contains special characters/, `gRPC RegisterModel: refused with the same message (${grpc.code})`);

  t.same(forgedLines(log), [], 'the server log holds no forged line');
  const listed = (await (await fetch(`${server.urls.management}/models`)).json()) as { models: unknown[] };
  t.same(listed.models, [], 'nothing was registered');
  await survived(t, server, { models: [], sent, answered });
});

t.test('an empty model_name means none: the archive names the model, as in TorchServe', async (t) => {
  const server = await serveNames(t, []);
  const res = await register(server, { url: 'echo.mar', model_name: '' });
  t.equal(res.status, 200, await res.text());
  await survived(t, server, { models: ['echo'], sent: 1, answered: 1 });
});

t.test('a valid 255-character name registers, answers and unregisters', async (t) => {
  const server = await serveNames(t, []);
  const name = `A${'b'.repeat(250)}_.-9`;
  t.equal(name.length, 255);
  const res = await register(server, { url: 'echo.mar', model_name: name });
  t.equal(res.status, 200, `registered: ${await res.text()}`);
  const predicted = await fetch(`${server.urls.inference}/predictions/${name}`, { method: 'POST', body: 'hello' });
  t.equal(predicted.status, 200, 'it answers');
  await predicted.arrayBuffer();
  const gone = await fetch(`${server.urls.management}/models/${name}`, { method: 'DELETE' });
  t.equal(gone.status, 200, `unregistered: ${await gone.text()}`);
  await survived(t, server, { models: [], sent: 3, answered: 3 });
});

t.test('--models with a name TorchServe would refuse: that one is logged and skipped, the others are served', async (t) => {
  const log: string[] = [];
  const server = await serveNames(t, log, { load_models: 'a/b=echo.mar,good.name=echo.mar' });
  t.ok(
    log.some((line) => line.includes('Failed to load model a/b=echo.mar: Model name contains special characters.')),
    'the refused name is in the log',
  );
  await survived(t, server, { models: ['good.name'] });
});

t.test('a snapshot naming a model as no longer allowed: that one is logged and skipped, the others are restored', async (t) => {
  const log: string[] = [];
  const version = {
    defaultVersion: true,
    marName: 'echo.mar',
    runtimeType: 'python',
    minWorkers: 1,
    maxWorkers: 1,
    batchSize: 1,
    maxBatchDelay: 100,
    responseTimeout: 120,
    startupTimeout: 120,
  };
  const snapshot = { name: 'old', modelCount: 2, created: 0, models: { [`old\n${FORGED}`]: { '1.0': version }, echo: { '1.0': version } } };
  // config.properties reads a backslash as an escape, as Java's Properties does.
  const server = await serveNames(t, log, { model_snapshot: JSON.stringify(snapshot).replace(/\\/g, '\\\\') });
  t.ok(
    log.some((line) => line.includes('FAILED to restore model old') && line.includes('Model name contains special characters.')),
    'the refused name is in the log',
  );
  t.same(forgedLines(log), [], 'as one line, forging none');
  await survived(t, server, { models: ['echo'] });
});

import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { errorCodes, errorFromWire, errorsDoc, grpcStatusName, tsError, TsError } from './errors.js';

t.test('every code builds a TorchServe-shaped body', async (t) => {
  for (const code of errorCodes) {
    t.match(code, /^TSS_ERR_[A-Z]+(_[A-Z]+)*$/, `${code} is named by area`);
    const err = tsError(code, 'x', 'y');
    const body = err.toJSON();
    t.same(Object.keys(body), ['code', 'type', 'message'], `${code} body keys`);
    t.ok(body.code >= 400 && body.code < 600, `${code} status`);
    t.match(body.type, /(Exception)$/, `${code} type is a Java exception name`);
  }
});

t.test('templates are filled in order; wire errors come back by code', async (t) => {
  t.equal(tsError('TSS_ERR_MODEL_VERSION_NOT_FOUND', '2.0', 'm').message, 'Model version: 2.0 does not exist for model: m');
  const back = errorFromWire('TSS_ERR_PREDICTION_HANDLER', 'custom', 599);
  t.ok(back instanceof TsError);
  t.equal(back.status, 599);
  t.equal(errorFromWire('SOMETHING_ELSE', 'm').code, 'TSS_ERR_INTERNAL', 'unknown codes are internal errors');
});

t.test("the gRPC status of each HTTP status is TorchServe's mapping", async (t) => {
  const pinned: Array<[number, string]> = [
    [200, 'OK'],
    [400, 'INVALID_ARGUMENT'],
    [401, 'UNAUTHENTICATED'],
    [403, 'PERMISSION_DENIED'],
    [404, 'NOT_FOUND'],
    [405, 'FAILED_PRECONDITION'],
    [409, 'ABORTED'],
    [413, 'RESOURCE_EXHAUSTED'],
    [429, 'RESOURCE_EXHAUSTED'],
    [499, 'CANCELLED'],
    [500, 'INTERNAL'],
    [501, 'UNIMPLEMENTED'],
    [503, 'UNAVAILABLE'],
    [504, 'DEADLINE_EXCEEDED'],
    [507, 'INTERNAL'],
  ];
  for (const [http, grpc] of pinned) t.equal(grpcStatusName(http), grpc, `${http} -> ${grpc}`);
});

t.test("an error answers gRPC with the table's own status where TorchServe differs from the mapping", async (t) => {
  t.equal(tsError('TSS_ERR_HTTP_INVALID_TOKEN').grpcStatus, 'PERMISSION_DENIED', 'a failed token check: 400 over HTTP');
  t.equal(tsError('TSS_ERR_GRPC_MODEL_API_DISABLED').grpcStatus, 'PERMISSION_DENIED');
  t.equal(tsError('TSS_ERR_MODEL_NAME_REQUIRED').grpcStatus, 'INVALID_ARGUMENT', 'else the mapping of its HTTP status');
  t.equal(new TsError('TSS_ERR_HTTP_INVALID_TOKEN', 'other', 401).grpcStatus, 'UNAUTHENTICATED', 'an error given another status maps that one');
});

t.test('gRPC failures are made from the table: no status and message written inline in src/grpc', async (t) => {
  const dir = new URL('./grpc/', import.meta.url);
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))) {
    const inline = readFileSync(new URL(file, dir), 'utf8').match(/new GrpcFailure\(status\.[A-Z_]+, ['`][^)]*\)/g) ?? [];
    t.same(inline, [], file);
  }
});

t.test('docs/errors.md is made from the table (npm run docs:errors) and lists every code once', async (t) => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  t.equal(doc, errorsDoc());
  for (const code of errorCodes) t.equal(doc.split(`| \`${code}\` |`).length - 1, 1, code);
});

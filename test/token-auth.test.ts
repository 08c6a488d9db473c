// Token authorization as TorchServe 0.11+: on by default, 400 InvalidKeyException for a missing,
// wrong, expired or wrong-kind key; /token rotates a key with the API key.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startTestServer, type TestServer } from './helpers.js';

interface KeyFile {
  management: { key: string; 'expiration time': string };
  inference: { key: string; 'expiration time': string };
  API: { key: string };
}

const INVALID = { code: 400, type: 'InvalidKeyException', message: 'Token Authorization failed. Token either incorrect, expired, or not provided correctly' };

function keys(server: TestServer): KeyFile {
  return JSON.parse(readFileSync(join(server.dir, 'key_file.json'), 'utf8')) as KeyFile;
}

const bearer = (key: string): RequestInit => ({ headers: { authorization: `Bearer ${key}` } });

t.test('each API takes its own key; metrics and the API description take none', async (t) => {
  const server = await startTestServer(t, { properties: { disable_token_authorization: 'false' } });
  const file = join(server.dir, 'key_file.json');
  t.equal(statSync(file).mode & 0o777, 0o600, 'key file is private');
  const k = keys(server);
  for (const key of [k.inference.key, k.management.key, k.API.key]) t.match(key, /^[A-Za-z0-9_-]{8}$/);

  const noToken = await fetch(`${server.urls.inference}/ping`);
  t.equal(noToken.status, 400);
  t.same(await noToken.json(), INVALID);
  t.equal((await fetch(`${server.urls.inference}/ping`, bearer('wrongkey'))).status, 400, 'wrong key');
  t.equal((await fetch(`${server.urls.inference}/ping`, { headers: { authorization: k.inference.key } })).status, 400, 'no Bearer');
  t.equal((await fetch(`${server.urls.inference}/ping`, bearer(k.inference.key))).status, 200, 'inference key');
  t.equal((await fetch(`${server.urls.inference}/ping`, bearer(k.management.key))).status, 400, 'management key cannot infer');

  const mgmt = `${server.urls.management}/models`;
  t.equal((await fetch(mgmt, bearer(k.inference.key))).status, 400, 'the inference key cannot manage');
  t.equal((await fetch(mgmt, bearer(k.management.key))).status, 200, 'management key');
  t.equal((await fetch(`${server.urls.metrics!}/metrics`)).status, 200, 'metrics need no token');
  const described = await fetch(server.urls.inference, { method: 'OPTIONS' });
  t.equal(described.status, 200, 'the API description needs no token');
});

t.test('/token rotates a key with the API key only', async (t) => {
  const server = await startTestServer(t, { properties: { disable_token_authorization: 'false' } });
  const before = keys(server);
  const refused = await fetch(`${server.urls.management}/token?type=inference`, bearer(before.management.key));
  t.equal(refused.status, 400);
  t.match(await refused.json(), { type: 'InvalidKeyException', message: /^Token Authentication failed/ });
  t.equal((await fetch(`${server.urls.management}/token?type=bogus`, bearer(before.API.key))).status, 400, 'bad type');

  const res = await fetch(`${server.urls.management}/token?type=inference`, bearer(before.API.key));
  t.equal(res.status, 200);
  const after = keys(server);
  t.same(await res.json(), { inference: after.inference }, 'answers the new key as the key file has it');
  t.not(after.inference.key, before.inference.key);
  t.equal(after.management.key, before.management.key, 'the other key is kept');
  t.equal((await fetch(`${server.urls.inference}/ping`, bearer(before.inference.key))).status, 400, 'old key refused');
  t.equal((await fetch(`${server.urls.inference}/ping`, bearer(after.inference.key))).status, 200, 'new key works');
});

t.test('keys expire after token_expiration_min', async (t) => {
  // 1.2 s: the key is made as the server starts, and under a loaded suite the first ping came more
  // than 0.3 s (0.005 min) after it, the key expired already.
  const server = await startTestServer(t, { properties: { disable_token_authorization: 'false', token_expiration_min: '0.02' } });
  const k = keys(server);
  t.equal((await fetch(`${server.urls.inference}/ping`, bearer(k.inference.key))).status, 200, 'a key before it expires');
  await new Promise((r) => setTimeout(r, 1300));
  t.same(await (await fetch(`${server.urls.inference}/ping`, bearer(k.inference.key))).json(), INVALID, 'expired is refused like wrong');
  const refreshed = await fetch(`${server.urls.management}/token?type=inference`, bearer(k.API.key));
  t.equal(refreshed.status, 200, 'the API key never expires');
});

t.test('--disable-token-auth turns it off', async (t) => {
  const server = await startTestServer(t, { properties: { disable_token_authorization: 'false' }, cli: { disableTokenAuth: true } });
  t.equal((await fetch(`${server.urls.inference}/ping`)).status, 200);
});

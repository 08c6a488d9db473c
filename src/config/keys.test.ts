import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { configurationDoc, KEYS, type KeySpec } from './keys.js';
import { loadServerConfig } from './server-config.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function load(lines: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof loadServerConfig> {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-keys-'));
  // Removed once read: a run loads hundreds, and a /tmp of left folders slows whatever walks it
  // (test/hostile-archives.test.ts's search for its canary took 15 s among 20,000 of them).
  try {
    const file = join(dir, 'config.properties');
    writeFileSync(file, lines.join('\n') + '\n');
    return loadServerConfig({ tsConfig: file }, env, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A value the key allows (its default where it has one). */
function valid(spec: KeySpec): string {
  if (spec.default !== undefined) return spec.default;
  switch (spec.type) {
    case 'int':
      return String(spec.min ?? 1);
    case 'number':
      return String(spec.min ?? 1);
    case 'bool':
      return 'true';
    case 'enum':
      return spec.values![0]!;
    case 'json':
      return '{}';
    case 'regex':
      return 'SECRET_.*';
    case 'address':
      return 'http://127.0.0.1:0';
    default:
      return 'x';
  }
}

/** A value the key refuses; none for free text. */
function invalid(spec: KeySpec): string | undefined {
  switch (spec.type) {
    case 'int':
      return spec.min !== undefined ? String(spec.min - 1) : 'abc';
    case 'number':
      return 'abc';
    case 'bool':
      return 'yes';
    case 'enum':
      return 'nonsense';
    case 'json':
      return '{not json';
    case 'regex':
      return '(unclosed';
    case 'address':
      return 'ftp:/nowhere';
    default:
      return undefined;
  }
}

t.test('every key of the table: a value it allows loads, a value it does not stops the start naming key, value and what is allowed', async (t) => {
  for (const spec of KEYS.values()) {
    t.doesNotThrow(() => load([`${spec.name}=${valid(spec)}`]), `${spec.name}=${valid(spec)}`);
    const bad = invalid(spec);
    if (bad === undefined) continue;
    t.throws(
      () => load([`${spec.name}=${bad}`]),
      { name: 'Error', message: new RegExp(`^Invalid configuration:\\n  ${spec.name}=.* is not allowed: ${spec.name} is `) },
      `${spec.name}=${bad}`,
    );
  }
});

t.test('the values people got wrong: a negative queue, a word for a count, a typo of a key', async (t) => {
  t.throws(() => load(['job_queue_size=-5']), {
    message: 'Invalid configuration:\n  job_queue_size=-5 is not allowed: job_queue_size is a whole number from 1 to 2147483647',
  });
  t.throws(
    () => load(['default_workers_per_model=abc', 'metrics_mode=loud']),
    {
      message:
        'Invalid configuration:\n  default_workers_per_model=abc is not allowed: default_workers_per_model is a whole number from 0 to 1024\n  metrics_mode=loud is not allowed: metrics_mode is one of prometheus, log, legacy',
    },
    'every bad value at once',
  );
  const config = load(['inference_adress=http://0.0.0.0:8080', 'NUM_WORKERS=1']);
  t.same(
    config.warnings,
    ['Unknown configuration key inference_adress: did you mean inference_address? It is ignored.'],
    'a typo warned about; a key TorchServe ignores is not',
  );
  t.equal(config.inferenceAddress.raw, 'http://127.0.0.1:8080');
});

t.test('every key with an environment variable is set by it, with enable_envvars_config=true; never without', async (t) => {
  for (const spec of KEYS.values()) {
    if (spec.env === false || spec.applies === 'ignored') continue;
    const value = valid(spec);
    t.equal(load(['enable_envvars_config=true'], { [spec.env]: value }).properties.get(spec.name), value, spec.env);
    t.equal(load([], { [spec.env]: value }).properties.get(spec.name), undefined, `${spec.env} without enable_envvars_config`);
  }
  t.throws(
    () => load(['enable_envvars_config=true'], { TS_JOB_QUEUE_SIZE: '0' }),
    { message: /job_queue_size=0 is not allowed/ },
    'an environment value is checked too',
  );
});

t.test('docs/configuration.md is made from the table (npm run docs:config)', async (t) => {
  t.equal(readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8'), configurationDoc());
});

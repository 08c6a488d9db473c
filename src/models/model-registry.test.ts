// The registry's bookkeeping of exactly which Model instance is registered, with stand-in models
// (only name and version): a failed registration's undoing takes out itself and nothing newer.
import t from 'tap';
import type { SnapshotModel } from '../config/snapshot-file.js';
import type { Model } from './model.js';
import { ModelRegistry } from './model-registry.js';

const model = (name: string, version: string): Model => ({ name, version }) as Model;

t.test('removeExactly takes out that instance only, never a newer registration of the same name and version', async (t) => {
  const registry = new ModelRegistry();
  const first = model('m', '1.0');
  registry.add(first);
  registry.remove('m', '1.0');
  const newer = model('m', '1.0');
  registry.add(newer);
  t.equal(registry.removeExactly(first), false, 'the first was unregistered already: nothing to undo');
  t.equal(registry.find('m'), newer, 'the newer registration stays');
  t.equal(registry.removeExactly(newer), true);
  t.equal(registry.has('m'), false, 'its last version gone, the name is gone');
});

t.test('removeExactly of the default version hands the default to the oldest version left', async (t) => {
  const registry = new ModelRegistry();
  const first = model('m', '1.0');
  registry.add(first);
  registry.add(model('m', '2.0'));
  registry.add(model('m', '3.0'));
  t.equal(registry.removeExactly(first), true);
  t.equal(registry.find('m')?.version, '2.0');
});

t.test('a failed restore: get answers its 503 with why, a registration of that version ends it, forgetFailed forgets it', async (t) => {
  const registry = new ModelRegistry();
  // The registry reads only these of a snapshot entry.
  const entry = { defaultVersion: true, marName: 'm.mar' } as SnapshotModel;
  registry.addFailed({ name: 'm', version: '1.0', entry, reason: 'not a zip' });
  t.throws(() => registry.get('m'), {
    code: 'TSS_ERR_MODEL_RESTORE_FAILED',
    status: 503,
    message: /^Model "m" version 1\.0 could not be restored .*: not a zip\./,
  });
  t.equal(registry.find('m'), undefined, 'no model to serve');
  t.equal(registry.failedRestore('m')?.version, '1.0');
  registry.add(model('m', '1.0'));
  t.equal(registry.failedRestores().length, 0, 'registered again: no longer failed');
  registry.addFailed({ name: 'm', version: '2.0', entry: { ...entry, defaultVersion: false }, reason: 'missing' });
  t.equal(registry.get('m').version, '1.0', 'the registered default still serves');
  t.throws(() => registry.get('m', '2.0'), { code: 'TSS_ERR_MODEL_RESTORE_FAILED', message: /version 2\.0 .*: missing\./ });
  t.equal(registry.forgetFailed('m', '3.0'), false);
  t.equal(registry.forgetFailed('m', '2.0'), true);
  t.throws(() => registry.get('m', '2.0'), { code: 'TSS_ERR_MODEL_VERSION_NOT_FOUND', message: 'Model version: 2.0 does not exist for model: m' });
});

t.test("all() is every version of every name, names in registration order, each name's versions in theirs", async (t) => {
  const registry = new ModelRegistry();
  const versions = [model('a', '1.0'), model('b', '1.0'), model('a', '2.0'), model('c', '1.0'), model('b', '2.0')];
  for (const v of versions) registry.add(v);
  t.same(
    registry.all().map((m) => `${m.name}:${m.version}`),
    ['a:1.0', 'a:2.0', 'b:1.0', 'b:2.0', 'c:1.0'],
  );
  registry.remove('b', '2.0');
  t.same(
    registry.all().map((m) => `${m.name}:${m.version}`),
    ['a:1.0', 'a:2.0', 'b:1.0', 'c:1.0'],
    'a removed version is gone',
  );
  t.same(new ModelRegistry().all(), [], 'none registered: none');
});

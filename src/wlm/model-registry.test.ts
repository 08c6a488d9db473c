// The registry's bookkeeping of exactly which Model instance is registered, with stand-in models
// (only name and version): a failed registration's undoing takes out itself and nothing newer.
import t from 'tap';
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

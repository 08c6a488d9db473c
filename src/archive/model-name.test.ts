// What may name a model and a version: torch-model-archiver's pattern, at most 255 characters.
import t from 'tap';
import { checkModelName, checkModelVersion, MAX_NAME_LENGTH } from './model-name.js';

t.test("names and versions torch-model-archiver's pattern allows pass, up to 255 characters", async (t) => {
  for (const name of ['mnist', 'resnet-18', 'a.b_c-d', '7', 'x'.repeat(MAX_NAME_LENGTH)]) t.doesNotThrow(() => checkModelName(name), name.slice(0, 20));
  t.doesNotThrow(() => checkModelVersion('1.0'));
});

t.test('anything else is a 400 that says which part is wrong', async (t) => {
  for (const name of ['', '-leading', '.hidden', 'a b', 'a/b', 'a\nb', '名前']) {
    t.throws(() => checkModelName(name), { status: 400, code: 'TSS_ERR_MODEL_NAME_INVALID', message: /name/ }, JSON.stringify(name));
  }
  t.throws(() => checkModelVersion('1.0 beta'), { code: 'TSS_ERR_MODEL_NAME_INVALID', message: /version/ });
  t.throws(() => checkModelName('x'.repeat(MAX_NAME_LENGTH + 1)), { status: 400, code: 'TSS_ERR_MODEL_NAME_TOO_LONG' });
  t.throws(() => checkModelVersion('1'.repeat(MAX_NAME_LENGTH + 1)), { code: 'TSS_ERR_MODEL_NAME_TOO_LONG', message: /version/ });
});

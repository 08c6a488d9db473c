// MAR-INF/MANIFEST.json as the server reads it and the archiver writes it: defaults, the checks
// that refuse a manifest, the file paths it may name, TorchServe's key order.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { formatManifest, MANIFEST_PATH, readManifest, validateManifest } from './manifest.js';

/** A model directory whose manifest is `text`. */
function modelDir(t: Test, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-manifest-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'MAR-INF'));
  writeFileSync(join(dir, MANIFEST_PATH), text);
  return dir;
}

t.test('the defaults: runtime python, version 1.0; a directory without a manifest gets both', async (t) => {
  t.same(validateManifest({ model: { modelName: 'm' } }), { runtime: 'python', model: { modelName: 'm', modelVersion: '1.0' } });
  const bare = mkdtempSync(join(tmpdir(), 'tsserve-manifest-'));
  t.teardown(() => rmSync(bare, { recursive: true, force: true }));
  t.same(readManifest(bare), { runtime: 'python', model: { modelVersion: '1.0' } });
});

t.test("a manifest the server cannot use is refused with TorchServe's messages", async (t) => {
  const invalid = (parsed: unknown, message: string): void => {
    t.throws(() => validateManifest(parsed), { status: 400, message }, message);
  };
  invalid([], 'Failed to parse signature.json.');
  invalid({ runtime: 'python' }, 'Missing Model entry in manifest file.');
  invalid({ runtime: 'java', model: {} }, 'Runtime is not defined or invalid.');
  invalid({ runtime: 3, model: {} }, 'Runtime is not defined or invalid.');
  invalid({ model: { modelName: 'm', batch: 4 } }, 'Manifest field model.batch must be a string.');
  t.throws(() => readManifest(modelDir(t, '{not json')), { status: 400, message: 'Failed to parse signature.json.' }, 'JSON that does not parse');
});

t.test('every file the manifest names stays inside the model directory', async (t) => {
  for (const field of ['serializedFile', 'modelFile', 'requirementsFile', 'configFile']) {
    const dir = modelDir(t, JSON.stringify({ runtime: 'python', model: { modelName: 'm', [field]: '../other/model.onnx' } }));
    t.throws(
      () => readManifest(dir),
      { status: 400, message: `Manifest field model.${field} names a file outside the model directory: ../other/model.onnx` },
      field,
    );
  }
  const inside = modelDir(t, JSON.stringify({ runtime: 'python', model: { modelName: 'm', serializedFile: 'sub/model.onnx' } }));
  t.equal(readManifest(inside).model.serializedFile, 'sub/model.onnx', 'a path inside is kept');
});

t.test("the archiver writes TorchServe's key order and leaves out what was not given", async (t) => {
  const text = formatManifest({
    runtime: 'python',
    archiverVersion: '0.12.0',
    createdOn: '01/01/2026 00:00:00',
    model: { modelVersion: '2.0', handler: 'h.ts', modelName: 'm', description: 'not a TorchServe key' },
  });
  t.equal(
    text,
    '{\n  "createdOn": "01/01/2026 00:00:00",\n  "runtime": "python",\n  "model": {\n    "modelName": "m",\n    "handler": "h.ts",\n    "modelVersion": "2.0"\n  },\n  "archiverVersion": "0.12.0"\n}',
  );
});

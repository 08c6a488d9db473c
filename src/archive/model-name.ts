/**
 * @module archive/model-name
 * What a model name and a model version may be: torch-model-archiver's pattern, which the names
 * of TorchServe users' archives already follow, and at most MAX_NAME_LENGTH characters. The front
 * end checks each name and version it registers, wherever it came from (the register API over
 * REST and gRPC, `--models name=...`, an archive's manifest or file name, a snapshot): a name is
 * written into URLs, log lines and describe answers. A line break in one forged log lines; one
 * longer than a URL path segment may be registered, then answered 414 to every call naming it,
 * unregister included.
 */
import { tsError } from '../errors.js';

export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_\-.]*$/;

/**
 * 255: the longest file name (NAME_MAX) on Linux, macOS and Windows file systems, and
 * torch-model-archiver writes `<name>.mar`, so no archived TorchServe model has a longer name.
 * It is well under the longest path segment the router reads (http/listener.ts).
 */
export const MAX_NAME_LENGTH = 255;

/** Throws TorchServe's 400 unless `name` may name a model. */
export function checkModelName(name: string): void {
  check('name', name);
}

/** Throws TorchServe's 400 unless `version` may be a model's version. */
export function checkModelVersion(version: string): void {
  check('version', version);
}

function check(part: 'name' | 'version', text: string): void {
  if (text.length > MAX_NAME_LENGTH) throw tsError('TSS_ERR_MODEL_NAME_TOO_LONG', part, MAX_NAME_LENGTH);
  if (!MODEL_NAME.test(text)) throw tsError('TSS_ERR_MODEL_NAME_INVALID', part, part);
}

/**
 * @module archive/dependencies
 * `install_py_dep_per_model=true`, for Node: a model whose archive names a package.json as its
 * requirements file (`tsserve-archiver -r package.json`) gets those dependencies installed by npm
 * into its own node_modules at registration, before a worker starts, as TorchServe runs pip for
 * a requirements.txt. tsserve and its dependencies are then linked beside them (link-packages.ts),
 * so a handler imports both.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { tsError } from '../errors.js';
import { linkPackages } from './link-packages.js';

/** npm gets this long; a registration waits for it. */
const INSTALL_TIMEOUT_MS = 10 * 60_000;

export type InstallOutcome = 'installed' | 'not-npm';

/**
 * Installs the dependencies the requirements file declares; a pip requirements file answers
 * 'not-npm' (no worker here runs Python). A failed install is a 400 with npm's last words.
 */
export async function installDependencies(modelDir: string, requirementsFile: string, modelName: string): Promise<InstallOutcome> {
  if (!requirementsFile.endsWith('.json')) return 'not-npm';
  const fail = (reason: string): never => {
    throw tsError('TSS_ERR_MODEL_DEPENDENCIES', modelName, reason);
  };
  if (basename(requirementsFile) !== requirementsFile) fail(`requirementsFile ${requirementsFile} must name a file at the archive's top level`);
  if (!existsSync(join(modelDir, requirementsFile))) fail(`the archive has no ${requirementsFile}`);
  const packageJson = join(modelDir, 'package.json');
  if (requirementsFile !== 'package.json') {
    if (existsSync(packageJson)) fail(`the archive has both ${requirementsFile} and a package.json; give the package.json as the requirements file`);
    copyFileSync(join(modelDir, requirementsFile), packageJson);
  }
  // --install-links: a `file:` dependency is copied in, not linked: a link out of the model
  // directory would let its handler reach, under worker_permission, what the link leads to.
  const args = ['install', '--omit=dev', '--no-audit', '--no-fund', '--no-package-lock', '--no-update-notifier', '--install-links'];
  await new Promise<void>((resolve, reject) => {
    execFile('npm', args, { cwd: modelDir, timeout: INSTALL_TIMEOUT_MS, maxBuffer: 16 * 2 ** 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      reject(tsError('TSS_ERR_MODEL_DEPENDENCIES', modelName, npmReason(stderr) ?? err.message));
    });
  });
  // npm removes what its package.json does not list: the links to tsserve go back.
  linkPackages(modelDir);
  return 'installed';
}

/** The line of npm's error report that says what went wrong, not its code, errno or log path. */
function npmReason(stderr: string): string | undefined {
  return stderr
    .split('\n')
    .filter((l) => /^npm (error|ERR!)/.test(l))
    .map((l) => l.replace(/^npm (error|ERR!) ?/, '').trim())
    .find((l) => l && !/^(code|syscall|path|errno|A complete log|Log files)\b/.test(l));
}

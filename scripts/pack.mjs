#!/usr/bin/env node
// Makes the package a user installs without cloning: `npm run pack` -> tsserve-<version>-<platform>.tgz
// (or tsserve-<version>.tgz with --all-platforms), then `npm install -g ./that.tgz` anywhere.
// --no-build packs the dist/ already built.
// --prepack is package.json's `prepack`: npm runs it before `npm pack` and `npm publish`, which it
// refuses (they would ship onnxruntime-node with its download step), and before `npm run pack`
// (the `pre` script of a script named pack), which it lets through.
//
// Why not plain `npm pack`: onnxruntime-node's install script downloads CUDA binaries from
// api.nuget.org on every Linux x64 install, and a package cannot tell npm to skip a dependency's
// script (an .npmrc or allowScripts only counts in the user's own project). The CPU binaries tsserve uses are
// already inside onnxruntime-node's npm package, so the tarball bundles onnxruntime-node without
// that script (and without the script's own dependencies): the install needs the npm registry
// alone, on npm 10 and 11 alike, and the user does not need to know any of this. Bundling also
// lets the tarball carry only the binaries of the platform it is for (45 MB of the 288 MB on
// Linux x64), as a Python wheel does; `os`/`cpu` make npm refuse it on another platform.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;
const BUNDLED = ['onnxruntime-node', 'onnxruntime-common'];

function main(args) {
  if (args[0] === '--prepack') return refusePlainNpmPack();
  const unknown = args.filter((a) => a !== '--all-platforms' && a !== '--no-build');
  if (unknown.length > 0) {
    console.error(`usage: npm run pack [-- --all-platforms] [-- --no-build]   (unknown: ${unknown.join(' ')})`);
    process.exit(2);
  }
  const platform = args.includes('--all-platforms') ? undefined : { os: process.platform, cpu: process.arch };
  if (!args.includes('--no-build')) {
    step('building dist/');
    npm(['run', 'build'], ROOT);
  }
  const stage = mkdtempSync(join(tmpdir(), 'tsserve-pack-'));
  try {
    const pkgDir = join(stage, 'package');
    step('copying the package files');
    for (const file of packageFiles()) cpSync(join(ROOT, file), join(pkgDir, file));
    step(`bundling onnxruntime-node for ${platform ? `${platform.os}/${platform.cpu}` : 'all platforms'}`);
    bundleOnnxRuntime(pkgDir, platform);
    writeJson(join(pkgDir, 'package.json'), publishedManifest(readJson(join(ROOT, 'package.json')), platform));
    step('packing');
    const [{ filename, size, unpackedSize }] = JSON.parse(npm(['pack', '--json', '--ignore-scripts'], pkgDir));
    const name = platform ? filename.replace(/\.tgz$/, `-${platform.os}-${platform.cpu}.tgz`) : filename;
    renameSync(join(pkgDir, filename), join(process.cwd(), name));
    console.log(`${name}: ${mb(size)} packed, ${mb(unpackedSize)} unpacked`);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** npm names the command that runs a script `run` (npm 11) or `run-script` (npm 10). */
function refusePlainNpmPack() {
  if (['run', 'run-script'].includes(process.env.npm_command)) return;
  console.error('tsserve: make the installable package with npm run pack (it bundles onnxruntime-node without its CUDA download step)');
  process.exit(1);
}

/** The files `npm pack` would take from the repository (package.json's `files`). */
function packageFiles() {
  const [{ files }] = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], ROOT));
  return files.map((f) => f.path);
}

function bundleOnnxRuntime(pkgDir, platform) {
  const ortDir = join(ROOT, 'node_modules', 'onnxruntime-node');
  const ortTarget = join(pkgDir, 'node_modules', 'onnxruntime-node');
  const binaries = join(ortDir, 'bin', 'napi-v6');
  const keep = platform ? join(binaries, platform.os, platform.cpu) : binaries;
  cpSync(ortDir, ortTarget, {
    recursive: true,
    filter: (src) => {
      const rel = relative(ortDir, src);
      // The install script and what only it needs go; so do other platforms' binaries.
      if (rel === 'script' || rel === 'node_modules') return false;
      if (!src.startsWith(binaries + sep)) return true;
      return keep.startsWith(src + sep) || src === keep || src.startsWith(keep + sep);
    },
  });
  const ortManifest = readJson(join(ortTarget, 'package.json'));
  delete ortManifest.scripts;
  ortManifest.dependencies = { 'onnxruntime-common': ortManifest.dependencies['onnxruntime-common'] };
  writeJson(join(ortTarget, 'package.json'), ortManifest);
  cpSync(join(ROOT, 'node_modules', 'onnxruntime-common'), join(pkgDir, 'node_modules', 'onnxruntime-common'), { recursive: true });
}

/** The repository's package.json as a user installs it: no development scripts or tools. */
function publishedManifest(pkg, platform) {
  const common = readJson(join(ROOT, 'node_modules', 'onnxruntime-common', 'package.json'));
  const ort = readJson(join(ROOT, 'node_modules', 'onnxruntime-node', 'package.json'));
  const published = { ...pkg };
  for (const key of ['scripts', 'devDependencies', 'allowScripts', 'tap']) delete published[key];
  published.dependencies = { ...pkg.dependencies, 'onnxruntime-node': ort.version, 'onnxruntime-common': common.version };
  published.bundleDependencies = BUNDLED;
  if (platform) Object.assign(published, { os: [platform.os], cpu: [platform.cpu] });
  return published;
}

function npm(args, cwd) {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

function step(what) {
  console.error(`tsserve pack: ${what}`);
}

function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

function writeJson(path, value) {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

main(process.argv.slice(2));

#!/usr/bin/env node
// The container check: builds tsserve's image with podman, then
// - kserve-runtime.mjs: runs it exactly as KServe's stock TorchServe runtime runs TorchServe's image;
// - pods.mjs: plays the Kubernetes manifests (deploy/kubernetes/base and app-pod) as pods;
// - stops.mjs: stops the server and the app at any moment, in and out of start-up.
// Traffic goes to 127.0.0.1 only.
//
//   node deploy/podman/check.mjs [--no-build] [--image NAME] [--base IMAGE] [--only kserve|pods|stops]
//
// Needs root, podman and runc (apt-get install podman runc mmdebstrap); without --base it makes
// the stand-in base image first (deploy/podman/make-base-image.sh). The last line is
// `N passed, M failed`; the exit code is non-zero when anything failed.
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { checkKserveRuntime } from './kserve-runtime.mjs';
import { facts, PODMAN, podman, ROOT, results, ULIMITS } from './lib.mjs';
import { checkPods } from './pods.mjs';
import { checkStops } from './stops.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const IMAGE = option('--image', 'localhost/tsserve:check');
const BASE = option('--base', 'localhost/node-base:24');
const PARTS = { kserve: checkKserveRuntime, pods: checkPods, stops: checkStops };

function build() {
  if (spawnSync('podman', [...PODMAN, 'image', 'exists', BASE]).status !== 0) {
    execFileSync('bash', [join(ROOT, 'deploy', 'podman', 'make-base-image.sh'), BASE.split(':')[1] ?? '24'], { stdio: 'inherit' });
  }
  const started = Date.now();
  execFileSync('podman', [...PODMAN, 'build', ...ULIMITS, '--network', 'host', '--build-arg', `BASE_IMAGE=${BASE}`, '-t', IMAGE, ROOT], { stdio: ['ignore', 'ignore', 'inherit'] });
  facts['image build (s)'] = Math.round((Date.now() - started) / 1000);
}

async function main() {
  if (!args.includes('--no-build')) build();
  facts['image size (MB)'] = Math.round(Number(podman('image', 'inspect', IMAGE, '--format', '{{.Size}}')) / 1e6);
  const only = option('--only', undefined);
  for (const [name, part] of Object.entries(PARTS)) if (!only || only === name) await part(IMAGE);
  console.log(`\n${Object.entries(facts).map(([k, v]) => `${k}: ${v}`).join('\n')}`);
  const failed = results.filter((r) => !r.ok).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  process.exitCode = failed > 0 ? 1 : 0;
}

await main();

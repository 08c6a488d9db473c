// The Kubernetes manifests run, not only validate: each kustomization in deploy/kubernetes is
// rendered by `kubectl kustomize` and played by `podman kube play`, a pod runtime that reads
// Kubernetes YAML (Deployments, ConfigMaps, security contexts, resource limits). The check then does
// what the kubelet and a client would: waits on the probes the YAML declares, predicts through each
// Service's port, and stops the pod as the kubelet does (preStop hooks, then SIGTERM with the
// pod's terminationGracePeriodSeconds) while requests are in flight.
//
// What podman 4.3 reads differently from Kubernetes, and what the check does in its place (also in
// docs/deploy.md):
// - replicas: each replica becomes a pod of its own on the same host ports; the check plays one.
// - Services are not played: the check publishes the container port each Service port targets on
//   127.0.0.1 (hostPort/hostIP), and calls the Service there.
// - Probes: startup and readiness probes are ignored, and a liveness probe becomes a healthcheck that
//   needs systemd timers and runs `curl` inside the container (the image has none); the check runs
//   every probe itself, from outside as the kubelet does (httpGet, tcpSocket) or through `podman
//   exec` (exec).
// - Lifecycle hooks and terminationGracePeriodSeconds are not read: the check runs the preStop
//   command and gives `podman pod stop` what is left of the grace period.
// - A persistentVolumeClaim is a podman volume of the claim's name: the check makes it, holding
//   model-store/mnist.mar.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { check, exitCode, fact, freePort, get, logsOf, podman, podmanTimed, podmanTry, post, ROOT, results, same, sleep } from './lib.mjs';

/** The image name the manifests use: the check's image is tagged with it. */
const MANIFEST_IMAGE = 'localhost/tsserve:0.1.0';
const DIGIT = readFileSync(join(ROOT, 'examples', 'mnist', 'digits', '7_0.png'));
const PNG = { 'content-type': 'image/png' };

/** The objects `kubectl kustomize` renders for deploy/kubernetes/`dir`. */
function render(dir) {
  const yaml = execFileSync('kubectl', ['kustomize', join(ROOT, 'deploy', 'kubernetes', dir)], { encoding: 'utf8' });
  return parseAllDocuments(yaml).map((doc) => doc.toJS());
}

const matches = (selector, labels) => Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** The container port a Service's targetPort names (a port name or number) in `containers`. */
function targetOf(containers, targetPort) {
  for (const container of containers) {
    const port = (container.ports ?? []).find((p) => p.name === targetPort || p.containerPort === targetPort);
    if (port) return port;
  }
  throw new Error(`no container port ${targetPort}`);
}

/**
 * The objects as podman can play them (see the module's comment), and where each Service port is
 * published on the host: `services[service][port name]` = host port.
 */
async function forPodman(objects) {
  const deployments = objects.filter((o) => o.kind === 'Deployment');
  const services = {};
  for (const deployment of deployments) deployment.spec.replicas = 1;
  for (const service of objects.filter((o) => o.kind === 'Service')) {
    const deployment = deployments.find((d) => matches(service.spec.selector, d.spec.template.metadata.labels));
    services[service.metadata.name] = {};
    for (const port of service.spec.ports) {
      const target = targetOf(deployment.spec.template.spec.containers, port.targetPort ?? port.port);
      target.hostIP = '127.0.0.1';
      target.hostPort ??= await freePort();
      services[service.metadata.name][port.name] = target.hostPort;
    }
  }
  // Probes on ports no Service publishes are reached the same way.
  for (const deployment of deployments) {
    for (const container of deployment.spec.template.spec.containers) {
      for (const port of container.ports ?? []) {
        port.hostIP = '127.0.0.1';
        port.hostPort ??= await freePort();
      }
    }
  }
  const played = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'ConfigMap');
  return { played, services, deployments };
}

/** The host port of a probe's `port` (a name or number) of `container`. */
const hostPortOf = (container, port) => (container.ports ?? []).find((p) => p.name === port || p.containerPort === port)?.hostPort;

function tcpOpen(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** One run of `probe` against `container` (named `name` in podman), as the kubelet would run it. */
async function probeOnce(probe, container, name) {
  try {
    if (probe.httpGet) {
      const res = await fetch(`http://127.0.0.1:${hostPortOf(container, probe.httpGet.port)}${probe.httpGet.path ?? '/'}`, { signal: AbortSignal.timeout(1000 * (probe.timeoutSeconds ?? 1)) });
      await res.arrayBuffer();
      return res.status >= 200 && res.status < 400;
    }
    if (probe.tcpSocket) return await tcpOpen(hostPortOf(container, probe.tcpSocket.port));
    if (probe.exec) return podmanTry('exec', name, ...probe.exec.command).status === 0;
  } catch {
    return false;
  }
  throw new Error(`a probe of a kind the check does not run: ${JSON.stringify(probe)}`);
}

/** Waits as the kubelet does: every periodSeconds, up to failureThreshold failures. Seconds it took, or undefined. */
async function probeUntilPassed(probe, container, name) {
  const period = probe.periodSeconds ?? 10;
  const attempts = probe.failureThreshold ?? 3;
  const started = Date.now();
  for (let i = 0; i < attempts; i++) {
    if (await probeOnce(probe, container, name)) return (Date.now() - started) / 1000;
    await sleep(period * 1000);
  }
  return undefined;
}

/** Each container's startup probe, then its readiness and liveness probes, as declared. */
async function waitOnProbes(pod, deployment) {
  for (const container of deployment.spec.template.spec.containers) {
    const name = `${pod}-${container.name}`;
    for (const kind of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const probe = container[kind];
      if (!probe) continue;
      const took = await probeUntilPassed(probe, container, name);
      check(`${pod}: ${container.name}'s ${kind} passed${took === undefined ? '' : ` (${took.toFixed(1)} s)`}`, took !== undefined, logsOf(name));
    }
  }
}

/** Kubernetes' quantities as podman states them: CPUs in billionths, memory in bytes. */
const nanoCpus = (cpu) => Math.round((String(cpu).endsWith('m') ? Number.parseFloat(cpu) / 1000 : Number(cpu)) * 1e9);
const bytes = (memory) => Number.parseFloat(memory) * 1024 ** ' KMGT'.indexOf(String(memory).match(/([KMGT])i$/)?.[1] ?? ' ');

/** The container runs as the pod's securityContext says, within the limits its resources say. */
function checkContainer(name, container) {
  const uid = podman('exec', name, 'id', '-u');
  check(`${name}: runs as uid 1000`, uid === '1000', uid);
  const limits = container.resources.limits;
  const applied = podman('inspect', name, '--format', '{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}');
  same(`${name}: cpu ${limits.cpu} and memory ${limits.memory} limits applied`, applied, `${nanoCpus(limits.cpu)} ${bytes(limits.memory)}`);
}

/** A podman volume named for the claim, holding model-store/mnist.mar as the manifests expect. */
function modelStoreVolume(claim) {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-claim-'));
  mkdirSync(join(dir, 'model-store'));
  copyFileSync(join(ROOT, 'model-store', 'mnist.mar'), join(dir, 'model-store', 'mnist.mar'));
  execFileSync('chmod', ['-R', 'a+rX', dir]);
  podmanTry('volume', 'rm', '-f', claim);
  podman('volume', 'create', '--opt', 'type=none', '--opt', `device=${dir}`, '--opt', 'o=bind', claim);
  return () => {
    podmanTry('volume', 'rm', '-f', claim);
    rmSync(dir, { recursive: true, force: true });
  };
}

/** A PNG upload sent slowly to `path` on `port`: the body takes `ms` to arrive. Resolves to the answer. */
function slowUpload(port, path, ms) {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers: { ...PNG, 'content-length': DIGIT.length } }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', (err) => resolve({ status: String(err) }));
    });
    req.on('error', (err) => resolve({ status: String(err) }));
    const pieces = 10;
    const size = Math.ceil(DIGIT.length / pieces);
    for (let i = 0; i < pieces; i++) setTimeout(() => req.write(DIGIT.subarray(i * size, (i + 1) * size)), (ms * i) / pieces);
    setTimeout(() => req.end(), ms);
  });
}

/**
 * Stops `pod` as the kubelet stops it: the preStop hooks, then SIGTERM, then SIGKILL once the grace
 * period is over. `inFlight` starts the requests that are under way when SIGTERM comes.
 */
async function stopLikeTheKubelet(pod, deployment, inFlight) {
  const spec = deployment.spec.template.spec;
  const grace = spec.terminationGracePeriodSeconds ?? 30;
  const started = Date.now();
  // The kubelet runs each container's hook at once, and SIGTERM follows its own container's.
  const hooks = spec.containers.filter((c) => c.lifecycle?.preStop?.exec).map((c) => podmanTimed('exec', `${pod}-${c.name}`, ...c.lifecycle.preStop.exec.command));
  await Promise.all(hooks);
  const requests = inFlight();
  await sleep(300);
  const left = Math.max(1, Math.round(grace - (Date.now() - started) / 1000));
  const sigtermMs = await podmanTimed('pod', 'stop', '-t', String(left), pod);
  const answers = await requests;
  const stopMs = Date.now() - started;
  fact(`${pod}: stop (preStop hooks + SIGTERM to exit) in ms`, stopMs);
  fact(`${pod}: SIGTERM to every container stopped, in ms`, sigtermMs);
  check(`${pod}: every request in flight at SIGTERM answered`, answers.every((a) => a.status === 200), JSON.stringify(answers).slice(0, 300));
  const codes = spec.containers.map((c) => `${c.name}=${exitCode(`${pod}-${c.name}`)}`);
  fact(`${pod}: exit codes`, codes.join(' '));
  check(`${pod}: every container exits 0 within the grace period (${grace} s)`, codes.every((c) => c.endsWith('=0')) && stopMs < grace * 1000, codes.join(' '));
}

const PODS = [
  {
    // tsserve alone, its model store on a volume: the Service's inference port predicts.
    dir: 'base',
    async predict(pod, services) {
      const inference = services.tsserve.inference;
      const answer = await post(`http://127.0.0.1:${inference}/predictions/mnist`, DIGIT, PNG);
      same(`${pod}: a 7 through the Service's inference port`, answer, { status: 200, body: 7 });
      const metrics = await get(`http://127.0.0.1:${services.tsserve.metrics}/metrics`);
      check(`${pod}: the Service's metrics port counts it`, /ts_inference_requests_total\{[^}]*model_name="mnist"/.test(metrics.body), `status ${metrics.status}`);
    },
    inFlight: (services) => Promise.all(Array.from({ length: 8 }, () => post(`http://127.0.0.1:${services.tsserve.inference}/explanations/mnist`, DIGIT, PNG).catch((err) => ({ status: String(err) })))),
  },
  {
    // The seed's pod: tsserve-app in front of tsserve on the pod's loopback.
    dir: 'app-pod',
    async predict(pod, services) {
      const app = services['tsserve-app'].http;
      const health = await get(`http://127.0.0.1:${app}/api/health`);
      check(`${pod}: the app reports tsserve healthy`, health.status === 200 && health.body.inference?.ok && health.body.management?.ok, JSON.stringify(health.body));
      same(`${pod}: a 7 posted to the app through its Service`, await post(`http://127.0.0.1:${app}/api/predict/mnist`, DIGIT, PNG), { status: 200, body: 7 });
    },
    inFlight: (services) => Promise.all([slowUpload(services['tsserve-app'].http, '/api/predict/mnist', 1500)]),
  },
];

async function playPod(spec) {
  const mark = results.length;
  const { played, services, deployments } = await forPodman(render(spec.dir));
  const deployment = deployments[0];
  const pod = `${deployment.metadata.name}-pod-0`;
  const claims = deployment.spec.template.spec.volumes.filter((v) => v.persistentVolumeClaim).map((v) => modelStoreVolume(v.persistentVolumeClaim.claimName));
  const file = join(mkdtempSync(join(tmpdir(), 'tsserve-kube-')), `${spec.dir}.yaml`);
  writeFileSync(file, played.map((o) => stringify(o)).join('---\n'));
  console.log(`\n# deploy/kubernetes/${spec.dir}: kubectl kustomize | podman kube play (${deployment.spec.template.spec.containers.map((c) => c.name).join(', ')})`);
  podmanTry('pod', 'rm', '-f', pod);
  const started = Date.now();
  const play = podmanTry('kube', 'play', file);
  try {
    if (!check(`${spec.dir}: podman kube play starts the pod`, play.status === 0, play.out)) return;
    await waitOnProbes(pod, deployment);
    fact(`${pod}: play to every probe passed, in ms`, Date.now() - started);
    for (const c of deployment.spec.template.spec.containers) checkContainer(`${pod}-${c.name}`, c);
    await spec.predict(pod, services);
    await stopLikeTheKubelet(pod, deployment, () => spec.inFlight(services));
  } finally {
    if (results.slice(mark).some((r) => !r.ok)) for (const c of deployment.spec.template.spec.containers) console.log(`${c.name}:\n${logsOf(`${pod}-${c.name}`)}`);
    podmanTry('pod', 'rm', '-f', pod);
    for (const remove of claims) remove();
    rmSync(file, { force: true });
  }
}

/** Plays deploy/kubernetes/base and app-pod with `image`. */
export async function checkPods(image) {
  podman('tag', image, MANIFEST_IMAGE);
  for (const spec of PODS) await playPod(spec);
}

// Every deploy manifest against the schema a cluster would check it with: Kubernetes' own kinds,
// KEDA's and the Prometheus Operator's through the kubernetes-models packages (the upstream OpenAPI schemas), KServe's
// kinds through the openAPIV3Schema of KServe's CRDs (test/fixtures/kserve). The kustomizations
// are built by `kubectl kustomize`, as `kubectl apply -k` builds them.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Ajv, type ValidateFunction } from 'ajv';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Service } from 'kubernetes-models/v1';
import t from 'tap';
import { parse, parseAllDocuments } from 'yaml';
import { parseProperties } from '../../src/config/properties.js';
import { FIXTURES, ROOT, tempDir } from '../helpers.js';

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: unknown };

const DEPLOY = join(ROOT, 'deploy');
const KSERVE_FIXTURES = join(FIXTURES, 'kserve');

/** Kubernetes' and KEDA's kinds: each class validates against its upstream schema. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1 Deployment': Deployment,
  'v1 Service': Service,
  'v1 ConfigMap': ConfigMap,
  'policy/v1 PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2 HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'keda.sh/v1alpha1 ScaledObject': ScaledObject,
  'monitoring.coreos.com/v1 ServiceMonitor': ServiceMonitor,
};

type Schema = { [keyword: string]: unknown };

/** Keywords whose value is a map of schemas, one schema, or a list of schemas. */
const SCHEMA_MAPS = ['properties', 'patternProperties'];
const ONE_SCHEMA = ['items', 'additionalProperties', 'not'];
const SCHEMA_LISTS = ['allOf', 'anyOf', 'oneOf'];

/** Calls `visit(holder, key)` for each subschema directly under `schema`. */
function eachSubschema(schema: unknown, visit: (holder: Record<string | number, unknown>, key: string | number) => void): void {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return;
  const s = schema as Schema;
  for (const k of SCHEMA_MAPS) if (s[k]) for (const name of Object.keys(s[k] as object)) visit(s[k] as Schema, name);
  for (const k of ONE_SCHEMA) if (typeof s[k] === 'object') visit(s, k);
  for (const k of SCHEMA_LISTS) {
    const list = s[k];
    if (Array.isArray(list)) for (let i = 0; i < list.length; i++) visit(list as unknown as Record<number, unknown>, i);
  }
}

/**
 * `schema` with each large subschema that occurs more than once (KServe's InferenceService
 * repeats a whole PodSpec per component) written once under $defs and referred to: the same
 * validation, an eighth of the schema, which Ajv compiles in a second where the whole took ten
 * or more (on a loaded 2-core machine, twenty).
 */
function withSharedSubschemas(schema: object): object {
  const counts = new Map<string, number>();
  const count = (sub: unknown): void => {
    const text = JSON.stringify(sub);
    counts.set(text, (counts.get(text) ?? 0) + 1);
    eachSubschema(sub, (holder, key) => count(holder[key]));
  };
  count(schema);
  const defs: Record<string, unknown> = {};
  const ids = new Map<string, string>();
  const share = (sub: unknown): void =>
    eachSubschema(sub, (holder, key) => {
      const text = JSON.stringify(holder[key]);
      if ((counts.get(text) ?? 0) < 2 || text.length < 500) return share(holder[key]);
      let id = ids.get(text);
      if (id === undefined) {
        id = `shared${ids.size}`;
        ids.set(text, id);
        const def = JSON.parse(text) as unknown;
        share(def);
        defs[id] = def;
      }
      holder[key] = { $ref: `#/$defs/${id}` };
    });
  const copy = structuredClone(schema);
  share(copy);
  return { ...copy, $defs: defs };
}

/** KServe's kinds: the openAPIV3Schema of each version of its CRDs, compiled once. */
const crdValidators = ((): Map<string, ValidateFunction> => {
  // CRD schemas carry Kubernetes' own keywords (x-kubernetes-*) and formats (int32, quantity).
  // inlineRefs off: each shared subschema compiled once, not again at each of its places.
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, inlineRefs: false });
  const validators = new Map<string, ValidateFunction>();
  for (const file of ['serving.kserve.io_clusterservingruntimes.yaml', 'serving.kserve.io_inferenceservices.yaml']) {
    const crd = parse(readFileSync(join(KSERVE_FIXTURES, file), 'utf8')) as {
      spec: { group: string; names: { kind: string }; versions: Array<{ name: string; schema: { openAPIV3Schema: object } }> };
    };
    for (const version of crd.spec.versions) {
      validators.set(`${crd.spec.group}/${version.name} ${crd.spec.names.kind}`, ajv.compile(withSharedSubschemas(version.schema.openAPIV3Schema)));
    }
  }
  return validators;
})();

/** The schema errors of one object; an object of a kind with no schema here is an error too. */
function schemaErrors(object: K8sObject): string[] {
  const key = `${object.apiVersion} ${object.kind}`;
  const Model = MODELS[key];
  if (Model) {
    try {
      new Model(object as never).validate();
      return [];
    } catch (err) {
      return [(err as Error).message];
    }
  }
  const validate = crdValidators.get(key);
  if (!validate) return [`no schema for ${key}`];
  return validate(object) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
}

function yamlObjects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as K8sObject)
    .filter(Boolean);
}

function kustomize(dir: string): K8sObject[] {
  return yamlObjects(execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' }));
}

const kustomizations = readdirSync(join(DEPLOY, 'kubernetes')).map((d) => join('kubernetes', d));
const kserveFiles = ['kserve/tsserve-runtime.yaml', ...readdirSync(join(DEPLOY, 'kserve', 'samples')).map((f) => join('kserve', 'samples', f))];

t.test('the validators tell a wrong object from a right one', async (t) => {
  const deployment = kustomize(join(DEPLOY, 'kubernetes', 'base')).find((o) => o.kind === 'Deployment')!;
  t.same(schemaErrors(deployment), []);
  t.not(schemaErrors({ ...deployment, spec: { ...(deployment.spec as object), replicas: 'two' } }).length, 0, 'a Deployment with replicas "two"');
  const isvc = yamlObjects(readFileSync(join(DEPLOY, 'kserve', 'samples', 'mnist-v1.yaml'), 'utf8'))[0]!;
  t.same(schemaErrors(isvc), []);
  t.not(schemaErrors({ ...isvc, spec: { predictor: { minReplicas: 'one' } } }).length, 0, 'an InferenceService with minReplicas "one"');
  t.same(schemaErrors({ apiVersion: 'example.com/v1', kind: 'Thing', metadata: { name: 'x' } }), ['no schema for example.com/v1 Thing']);
});

for (const dir of kustomizations) {
  t.test(`${dir}: kubectl kustomize builds it and every object validates`, async (t) => {
    const objects = kustomize(join(DEPLOY, dir));
    t.ok(objects.length > 0);
    for (const object of objects) t.same(schemaErrors(object), [], `${object.kind} ${object.metadata.name}`);
  });
}

for (const file of kserveFiles) {
  t.test(`${file} validates against KServe's CRD`, async (t) => {
    const objects = yamlObjects(readFileSync(join(DEPLOY, file), 'utf8'));
    t.ok(objects.length > 0);
    for (const object of objects) t.same(schemaErrors(object), [], `${object.kind} ${object.metadata.name}`);
  });
}

t.test("KServe's stock TorchServe runtime with tsserve's image: still a valid runtime, and tsserve's runtime runs the same command", async (t) => {
  const stock = yamlObjects(readFileSync(join(KSERVE_FIXTURES, 'kserve-torchserve.yaml'), 'utf8'))[0]! as K8sObject & {
    spec: { containers: Array<{ image: string; args: string[]; env: Array<{ name: string }> }> };
  };
  stock.spec.containers[0]!.image = 'tsserve:0.1.0';
  t.same(schemaErrors(stock), []);
  const ours = yamlObjects(readFileSync(join(DEPLOY, 'kserve', 'tsserve-runtime.yaml'), 'utf8'))[0]! as typeof stock;
  t.same(ours.spec.containers[0]!.args.slice(1), stock.spec.containers[0]!.args.slice(1), 'the same flags and storage layout after the command name');
  t.same(
    ours.spec.containers[0]!.env.map((e) => e.name),
    stock.spec.containers[0]!.env.map((e) => e.name),
  );
});

t.test('the plain Kubernetes deployment drops nothing in a rolling update or a drain', async (t) => {
  const objects = kustomize(join(DEPLOY, 'kubernetes', 'base'));
  const kinds = objects.map((o) => o.kind).sort();
  t.same(kinds, ['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service']);
  const config = objects.find((o) => o.kind === 'ConfigMap') as K8sObject & { data: Record<string, string> };
  const drainTimeout = Number(parseProperties(config.data['config.properties']!).get('drain_timeout'));
  const pod = (objects.find((o) => o.kind === 'Deployment') as K8sObject & { spec: { template: { spec: PodSpec } } }).spec.template.spec;
  const container = pod.containers[0]!;
  const preStop = Number(container.lifecycle.preStop.exec.command[1]);
  t.ok(
    pod.terminationGracePeriodSeconds > preStop + drainTimeout,
    `grace ${pod.terminationGracePeriodSeconds} s > preStop ${preStop} s + drain_timeout ${drainTimeout} s`,
  );
  t.equal(container.readinessProbe.httpGet.path, '/v2/health/ready', 'readiness: 200 once every model has a worker READY');
  t.equal(parseProperties(config.data['config.properties']!).get('ts_open_inference_protocol'), 'true', 'which the Open Inference Protocol serves');
  t.equal(container.livenessProbe.httpGet.path, '/ping');
  t.same(container.securityContext.capabilities.drop, ['ALL']);
  const scaled = kustomize(join(DEPLOY, 'kubernetes', 'keda')).find((o) => o.kind === 'ScaledObject') as K8sObject & {
    spec: { triggers: Array<{ metadata: { query: string } }> };
  };
  t.match(scaled.spec.triggers[0]!.metadata.query, /ts_queue_size/, "KEDA scales on tsserve's queue");
});

interface PodSpec {
  terminationGracePeriodSeconds: number;
  containers: Array<{
    lifecycle: { preStop: { exec: { command: string[] } } };
    readinessProbe: { httpGet: { path: string } };
    livenessProbe: { httpGet: { path: string } };
    securityContext: { capabilities: { drop: string[] } };
  }>;
}

t.test("every pod running tsserve carries Prometheus' scrape annotations for its metrics port", async (t) => {
  for (const dir of ['base', 'app-pod']) {
    const deployment = kustomize(join(DEPLOY, 'kubernetes', dir)).find((o) => o.kind === 'Deployment') as K8sObject & {
      spec: {
        template: {
          metadata: { annotations?: Record<string, string> };
          spec: { containers: Array<{ name: string; ports?: Array<{ containerPort: number }> }> };
        };
      };
    };
    const template = deployment.spec.template;
    t.same(
      template.metadata.annotations,
      { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8082', 'prometheus.io/path': '/metrics' },
      `${dir}: scrape, port and path`,
    );
    const tsserve = template.spec.containers.find((c) => c.name === 'tsserve')!;
    t.ok(
      tsserve.ports?.some((p) => p.containerPort === 8082),
      `${dir}: the tsserve container exposes 8082`,
    );
  }
});

t.test("the ServiceMonitor component, joined to the base, scrapes the Service's metrics port", async (t) => {
  // A component is joined by an overlay of the user's; kustomize takes only relative paths.
  const overlay = tempDir(t, 'tsserve-kustomize-');
  const from = (dir: string): string => relative(overlay, join(DEPLOY, 'kubernetes', dir));
  writeFileSync(join(overlay, 'kustomization.yaml'), `resources: [${from('base')}]\ncomponents: [${from('servicemonitor')}]\n`);
  const objects = kustomize(overlay);
  for (const object of objects) t.same(schemaErrors(object), [], `${object.kind} ${object.metadata.name}`);
  const monitor = objects.find((o) => o.kind === 'ServiceMonitor') as K8sObject & {
    spec: { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string; path: string }> };
  };
  const service = objects.find((o) => o.kind === 'Service') as K8sObject & {
    metadata: { labels: Record<string, string> };
    spec: { ports: Array<{ name: string; port: number }> };
  };
  t.match(service.metadata.labels, monitor.spec.selector.matchLabels, "its selector matches the Service's labels");
  const endpoint = monitor.spec.endpoints[0]!;
  t.equal(service.spec.ports.find((p) => p.name === endpoint.port)?.port, 8082, 'the port it names is the metrics port');
  t.equal(endpoint.path, '/metrics');
  t.same(schemaErrors({ ...monitor, spec: { endpoints: 'metrics' } }).length > 0, true, 'its schema tells a wrong ServiceMonitor');
});

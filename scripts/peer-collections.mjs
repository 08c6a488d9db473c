// tsserve's own Postman collections (v2.1) for TorchServe's API test data: each sends the requests
// of the TorchServe collection of the same name (test/postman/ in pytorch/serve) and makes its
// assertions, so that `newman` run with TorchServe's data files (-d) and environment (-e) checks
// tsserve as TorchServe's CI checks TorchServe. The one deliberate difference is named where it is
// made (docs/compatibility.md, "TorchServe's Postman collections").
// Used by scripts/peer-suites.mjs.

const SCHEMA = 'https://schema.getpostman.com/json/collection/v2.1.0/collection.json';
const MGMT = '{{protocol}}://{{hostname}}:{{mgmt-port}}';
const PRED = '{{protocol}}://{{hostname}}:{{pred-port}}';
// TorchServe's collections fetch http://localhost:8082/metrics, a fixed address; here the metrics
// port is the environment's, as the other ports are, so that a suite runs on free ports.
const METRICS = '{{protocol}}://{{hostname}}:{{metric-port}}';
const SEC = {
  pred: 'https://{{hostname}}:{{sec-pred-port}}',
  mgmt: 'https://{{hostname}}:{{sec-mgmt-port}}',
  metric: 'https://{{hostname}}:{{sec-metric-port}}',
};

function collection(name, items) {
  return { info: { name, schema: SCHEMA }, item: items };
}

function request(name, method, url, check, file) {
  const item = { name, request: { method, url }, event: [{ listen: 'test', script: { type: 'text/javascript', exec: check.split('\n') } }] };
  if (file) item.request.body = { mode: 'file', file: { src: file } };
  return item;
}

/** The status is one of `codes`. */
function statusIn(codes) {
  return `pm.test('status is one of ${codes.join(', ')}', function () {
  pm.expect(pm.response.code).to.be.oneOf(${JSON.stringify(codes)});
});`;
}

/** The status is the row's status_code (200 when the row has none). */
const ROW_STATUS = `var wanted = pm.iterationData.has('status_code') ? pm.iterationData.get('status_code') : 200;
pm.test('status is the row\\'s status_code', function () {
  pm.expect(pm.response.code).to.be.oneOf([wanted]);
});`;

// How an answer is compared with the row's expected value, by the row's `validator`:
// "values" compares class scores within the row's tolerance (a percentage of each expected score)
// and anything else for equality; "sizes" (explanations) compares only how many entries each has.
const COMPARE = {
  values: `function withinTolerance(got, want) {
  if (_.size(got) !== _.size(want)) return false;
  if (!_.isEqual(_.keys(got).sort(), _.keys(want).sort())) return false;
  var percent = pm.iterationData.get('tolerance');
  return _.every(_.keys(want), function (k) { return Math.abs(want[k] - got[k]) < (want[k] * percent) / 100; });
}
var compare = { image_classification: withinTolerance, default_json: _.isEqual, int8_array: _.isEqual };`,
  sizes: `function sameSize(got, want) { return _.size(got) === _.size(want); }
var compare = { image_classification: sameSize, default_json: sameSize };`,
};

/** 200, then the body against the row's `key` as its content-type says (text, JSON, or bytes). */
function expectedAnswer(key, how) {
  return `${COMPARE[how]}
var kind = pm.iterationData.get('content-type');
var want = pm.iterationData.get('${key}');
var validator = pm.iterationData.has('validator') ? pm.iterationData.get('validator') : 'default_json';
pm.test('status is 200', function () { pm.expect(pm.response.code).to.be.oneOf([200]); });
if (kind === 'text/plain') {
  pm.test('body is the expected text', function () { pm.response.to.have.body(want); });
} else if (kind === 'application/json') {
  pm.test('JSON body matches the expected value', function () {
    pm.expect(compare[validator](pm.response.json(), want)).to.be.true;
  });
} else if (kind === 'application/zip') {
  pm.test('bytes match the expected bytes', function () {
    pm.expect(compare[validator](new Int8Array(pm.response.stream), new Int8Array(want))).to.be.true;
  });
}`;
}

const register = () =>
  request(
    'Register Model',
    'POST',
    `${MGMT}/models?url={{url}}&model_name={{model_name}}&initial_workers={{worker}}&synchronous={{synchronous}}`,
    statusIn([200]),
  );
const unregister = () => request('Unregister model', 'DELETE', `${MGMT}/models/{{model_name}}`, statusIn([200, 201, 202]));
const metrics = () =>
  request(
    'Model Metrics',
    'GET',
    `${METRICS}/metrics`,
    `pm.test('prometheus counts 2XX requests', function () {
  pm.expect(pm.response.text()).to.match(/.*Requests2XX\\{Level="Host",Hostname=".*",\\} \\d+\\.\\d+.*/);
});`,
  );

/** One request per row of management_data.json: {{METHOD}} on {{path}}, status as the row says. */
export function management() {
  return collection('management', [request('management request', '{{METHOD}}', `${MGMT}/{{path}}`, ROW_STATUS)]);
}

/**
 * A collection that runs per data row: register the row's model, send the row's file to each of
 * `calls` ([name, path on the inference port, the row's key to compare with, how]), unregister,
 * read the metrics.
 */
function perModel(name, calls) {
  const sends = calls.map(([call, path, key, how]) => request(call, 'POST', `${PRED}${path}`, expectedAnswer(key, how), '{{file}}'));
  return collection(name, [register(), ...sends, unregister(), metrics()]);
}

const PREDICTED = ['expected', 'values'];
const EXPLAINED = ['expected_explain', 'sizes'];

/** Per row of inference_data.json: predict the row's file. */
export const inference = () => perModel('inference', [['Inference Model', '/predictions/{{model_name}}', ...PREDICTED]]);

/** Per row: explain the row's file (sizes compared). */
export const explanation = () => perModel('explanation', [['Explanations Model', '/explanations/{{model_name}}', ...EXPLAINED]]);

/** KServe v1 (`v1`) or v2 (`v2`): predict and explain the row's request body. */
export function kserve(version) {
  const [predict, explain] =
    version === 'v1'
      ? ['/v1/models/{{model_name}}:predict', '/v1/models/{{model_name}}:explain']
      : ['/v2/models/{{model_name}}/infer', '/v2/models/{{model_name}}/explain'];
  return perModel(`kserve ${version}`, [
    ['Inference Model', predict, ...PREDICTED],
    ['Explanations Model', explain, ...EXPLAINED],
  ]);
}

/**
 * TorchServe's HTTPS collections (no data file): OPTIONS on each listener, then register, describe,
 * scale and call one model over TLS. `kind` is 'torchserve' (squeezenet1_1 and kitten.jpg) or the
 * KServe version 'v1' / 'v2' (mnist, predict and explain with the KServe request files).
 */
export function https(kind) {
  const model = kind === 'torchserve' ? 'squeezenet1_1' : 'mnist';
  const [small, large] = kind === 'torchserve' ? [1, 1] : [5, 6];
  const calls =
    kind === 'torchserve'
      ? [['Inference', `${SEC.pred}/predictions/${model}`, '../examples/image_classifier/kitten.jpg']]
      : kind === 'v1'
        ? ['predict', 'explain'].map((verb) => [verb, `${SEC.pred}/v1/models/${model}:${verb}`, '../kubernetes/kserve/kf_request_json/v1/mnist.json'])
        : ['infer', 'explain'].map((verb) => [
            verb,
            `${SEC.pred}/v2/models/${model}/${verb}`,
            '../kubernetes/kserve/kf_request_json/v2/mnist/mnist_v2_tensor.json',
          ]);
  return collection(`https ${kind}`, [
    request('HTTPS inference API description', 'OPTIONS', SEC.pred, statusIn([200])),
    request('HTTPS management API description', 'OPTIONS', SEC.mgmt, statusIn([200])),
    request('HTTPS metrics API description', 'OPTIONS', SEC.metric, statusIn([200])),
    request('HTTPS register', 'POST', `${SEC.mgmt}/models?url={{mar_path_${model}}}&model_name=${model}&initial_workers=1&synchronous=true`, statusIn([200])),
    request('HTTPS describe', 'GET', `${SEC.mgmt}/models/${model}`, statusIn([200])),
    request(
      'HTTPS scale, synchronous',
      'PUT',
      `${SEC.mgmt}/models/${model}?min_worker=${small}&max_worker=${small}&synchronous=true`,
      statusIn([200, 201, 202]),
    ),
    request(
      'HTTPS scale, asynchronous',
      'PUT',
      `${SEC.mgmt}/models/${model}?min_worker=${large}&max_worker=${large}&synchronous=false`,
      statusIn([200, 201, 202]),
    ),
    ...calls.map(([name, url, file]) => request(`HTTPS ${name}`, 'POST', url, statusIn([200]), file)),
    request('HTTPS unregister', 'DELETE', `${SEC.mgmt}/models/${model}`, statusIn([200])),
  ]);
}

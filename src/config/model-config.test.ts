// A model's settings from where TorchServe takes them (the register API, the archive's
// model-config.yaml, config.properties' models=, the server's defaults), in TorchServe's order.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { limitWorkers, resolveSettings, yamlWarnings } from './model-config.js';
import { loadServerConfig, type ServerConfig } from './server-config.js';

/** The server's configuration, with `models` as config.properties' models= when given. */
function serverConfig(t: Test, models?: string): ServerConfig {
  const dir = mkdtempSync(join(tmpdir(), 'tsserve-model-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  if (models) writeFileSync(join(dir, 'config.properties'), `models=${models}\n`);
  return loadServerConfig({}, {}, dir);
}

t.test("defaults: TorchServe's batch of 1, delay 100 ms, the server's timeouts and queue; no workers unless asked", async (t) => {
  const server = serverConfig(t);
  const s = resolveSettings(server, 'm', '1.0', {}, {}, false, false);
  t.match(s, { batchSize: 1, takeQueued: 1, maxBatchDelay: 100, minWorkers: 0, maxWorkers: 0, maxRetryTimeoutInSec: 300, useJobTicket: false });
  t.equal(s.responseTimeout, server.defaultResponseTimeout);
  t.equal(s.jobQueueSize, server.jobQueueSize);
  t.equal(s.clientTimeoutInMills, server.defaultQueueTimeout * 1000);
  t.equal(s.sequence, undefined);
});

t.test('the API beats the YAML for batching; the YAML beats the API for timeouts (120 with a YAML, as TorchServe)', async (t) => {
  const server = serverConfig(t);
  const yaml = { batchSize: 4, maxBatchDelay: 50, responseTimeout: 30, minWorkers: 2, maxWorkers: 3 };
  const s = resolveSettings(server, 'm', '1.0', yaml, { batchSize: 8, responseTimeout: 99, initialWorkers: 1 }, true, false);
  t.match(s, { batchSize: 8, maxBatchDelay: 50, responseTimeout: 30, minWorkers: 2, maxWorkers: 3 });
  t.equal(resolveSettings(server, 'm', '1.0', {}, { responseTimeout: 99 }, true, false).responseTimeout, 120, 'a YAML without the key: 120, not the API');
  t.match(
    resolveSettings(server, 'm', '1.0', { minWorkers: 3, maxWorkers: 2 }, { initialWorkers: 1 }, true, false),
    { minWorkers: 1, maxWorkers: 1 },
    'a pair with max < min is not used',
  );
});

t.test('models= in config.properties: at start-up its workers, for any registration its batching', async (t) => {
  const server = serverConfig(t, '{"m": {"1.0": {"minWorkers": 1, "maxWorkers": 2, "batchSize": 3, "maxBatchDelay": 20}}}');
  t.match(resolveSettings(server, 'm', '1.0', {}, { initialWorkers: 4, atStartup: true }, false, false), {
    minWorkers: 1,
    maxWorkers: 2,
    batchSize: 3,
    maxBatchDelay: 20,
  });
  t.match(
    resolveSettings(server, 'm', '1.0', {}, { initialWorkers: 4 }, false, false),
    { minWorkers: 4, maxWorkers: 4, batchSize: 3 },
    'registered later: the API says the workers',
  );
  t.match(resolveSettings(server, 'm', '2.0', {}, {}, false, false), { batchSize: 1 }, 'another version is not named');
});

t.test('a built-in handler with no batch size takes queued requests at once, and adaptive threads, unless the YAML says', async (t) => {
  const server = serverConfig(t);
  t.match(resolveSettings(server, 'm', '1.0', {}, {}, false, true), { batchSize: 1, takeQueued: server.builtinHandlerBatchSize, adaptiveThreads: true });
  t.match(resolveSettings(server, 'm', '1.0', {}, { batchSize: 1 }, false, true), { takeQueued: 1, adaptiveThreads: false }, 'a batch size given');
  t.match(resolveSettings(server, 'm', '1.0', { adaptiveThreads: false }, {}, true, true), { adaptiveThreads: false });
  t.match(resolveSettings(server, 'm', '1.0', { sequenceBatching: true }, {}, true, true), { takeQueued: 1 }, 'not for a sequence model');
});

t.test("adaptive batching: with no batch size for a built-in handler, or when the YAML asks; TorchServe's keys keep their meaning when set", async (t) => {
  const server = serverConfig(t);
  const ceiling = server.builtinHandlerBatchSize;
  t.same(resolveSettings(server, 'm', '1.0', {}, {}, false, true).adaptive, { ceiling, latencyTargetMs: 100, maxWaitMs: undefined }, 'a built-in handler');
  t.equal(resolveSettings(server, 'm', '1.0', {}, {}, false, false).adaptive, undefined, 'another handler may count on one request at a time');
  t.match(
    resolveSettings(server, 'm', '1.0', { batching: 'adaptive', latencyTargetMs: 40 }, {}, true, false),
    { batchSize: 1, takeQueued: ceiling, adaptive: { ceiling, latencyTargetMs: 40 }, adaptiveThreads: false },
    'another handler whose YAML asks',
  );
  t.match(
    resolveSettings(server, 'm', '1.0', { batching: 'adaptive' }, { maxBatchDelay: 7 }, true, false),
    { maxBatchDelay: 7, adaptive: { maxWaitMs: 7 } },
    'maxBatchDelay without batch_size: the longest wait',
  );
  for (const [yaml, params, why] of [
    [{ batching: 'adaptive', batchSize: 4, maxBatchDelay: 50 }, {}, 'batchSize in the YAML'],
    [{ batching: 'adaptive' }, { batchSize: 4 }, 'batch_size registered'],
    [{ batching: 'fixed' }, {}, 'the YAML says fixed'],
    [{ batching: 'adaptive', sequenceBatching: true }, {}, 'a sequence model'],
  ] as const) {
    const s = resolveSettings(server, 'm', '1.0', yaml, params, true, true);
    t.equal(s.adaptive, undefined, why);
  }
  t.match(resolveSettings(server, 'm', '1.0', { batchSize: 4, maxBatchDelay: 50 }, {}, true, true), { batchSize: 4, maxBatchDelay: 50, takeQueued: 1 });
  t.same(yamlWarnings({ batching: 'sometimes', latencyTargetMs: 0 }, 'c.yaml').length, 2, 'a wrong value is warned of');
});

t.test('sequence batching: at least as many sequences as the workers can run at once', async (t) => {
  const s = resolveSettings(
    serverConfig(t),
    'm',
    '1.0',
    { sequenceBatching: true, maxNumSequence: 1, minWorkers: 2, maxWorkers: 2 },
    { batchSize: 4 },
    true,
    false,
  );
  t.match(s.sequence, { maxNumSequence: 8, maxSequenceJobQueueSize: 1, sequenceMaxIdleMSec: 0 });
});

t.test('worker counts over max_workers_per_model are cut, and said', async (t) => {
  const s = resolveSettings(serverConfig(t), 'm', '1.0', { minWorkers: 5, maxWorkers: 9 }, {}, true, false);
  t.equal(limitWorkers(s, 4), 'minWorkers 5, maxWorkers 9 is more than max_workers_per_model; 4 workers at most');
  t.match(s, { minWorkers: 4, maxWorkers: 4 });
  t.equal(limitWorkers(s, 4), undefined, 'within the limit: nothing said');
});

t.test("YAML warnings name a key the server reads with a value of the wrong kind; the handler's keys pass", async (t) => {
  t.same(yamlWarnings({ batchSize: 2, myHandlerSetting: [1], deviceType: 'cpu' }, 'model-config.yaml'), []);
  t.same(yamlWarnings({ batchSize: 0, useJobTicket: 'maybe', maxWorkers: [1, 2], parallelType: 'x' }, 'c.yaml'), [
    'c.yaml: batchSize: 0 is not allowed (batchSize is a whole number of at least 1); the default is used',
    'c.yaml: useJobTicket: "maybe" is not allowed (useJobTicket is true or false); the default is used',
    'c.yaml: maxWorkers: [1,2] is not allowed (maxWorkers is a whole number); the default is used',
    'c.yaml: parallelType: "x" is not allowed (parallelType is one of pp, tp, pptp, custom); the default is used',
  ]);
});

t.test('YAML minWorkers 0 with maxWorkers 1 or more: scale to zero (the first request starts a worker); with maxWorkers 0 not used', async (t) => {
  const server = serverConfig(t);
  t.match(resolveSettings(server, 'm', '1.0', { minWorkers: 0, maxWorkers: 2 }, { initialWorkers: 0 }, true, false), { minWorkers: 0, maxWorkers: 2 });
  t.match(resolveSettings(server, 'm', '1.0', { minWorkers: 0, maxWorkers: 0 }, { initialWorkers: 1 }, true, false), { minWorkers: 1, maxWorkers: 1 });
});

t.test('a scaling key above what a timer takes is refused, as its warning says, and the default used', async (t) => {
  const server = serverConfig(t);
  const yaml = { scaleDownDelayMSec: 1e17, scaleUpDelayMSec: 2 ** 31 - 1 };
  t.match(yamlWarnings(yaml, 'c.yaml'), [
    /^c\.yaml: scaleDownDelayMSec: 100000000000000000 is not allowed \(scaleDownDelayMSec is a whole number from 0 to 2147483647\)/,
  ]);
  const s = resolveSettings(server, 'm', '1.0', yaml, {}, true, false);
  t.equal(s.scaling.downDelayMs, server.scaling.downDelayMs, 'the default, not 1e17');
  t.equal(s.scaling.upDelayMs, 2 ** 31 - 1, 'the longest timer is allowed');
});

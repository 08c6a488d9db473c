import t from 'tap';
import { WORKER_STATE_WARNING } from './worker-state.js';
import type { LoadMessage } from '../protocol/messages.js';
import { threadBudget, WorkerProcess } from './worker-process.js';

/** A worker never started: enough to follow its states. */
function unstartedWorker(id: string): WorkerProcess {
  return new WorkerProcess({
    id,
    load: {} as LoadMessage,
    intraOpThreads: 1,
    wideIntraOpThreads: undefined,
    startupTimeoutMs: 1000,
    responseTimeoutMs: 1000,
    nice: 0,
    permission: false,
    env: {},
    onOutput: () => {},
    onMetrics: () => {},
    onBatchHandled: () => {},
  });
}

t.test('a state move the table refuses: a known race is ignored, any other is a process warning', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    if (w.name === WORKER_STATE_WARNING) warnings.push(w.message);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const raced = unstartedWorker('9000');
  for (const state of ['MODEL_LOADED', 'MODEL_LOADED', 'STOPPED', 'MODEL_LOADED', 'SCALED_DOWN', 'STOPPED'] as const) raced.moveTo(state);
  t.equal(raced.state, 'SCALED_DOWN', "a repeat, a 'loaded' read after the exit, an exit after the scale-down: ignored");
  const wrong = unstartedWorker('9001');
  wrong.moveTo('MODEL_LOADED');
  wrong.moveTo('STARTED');
  wrong.moveTo('ERROR');
  await new Promise((resolve) => setImmediate(resolve));
  t.same(warnings, ['Worker 9001: no move from MODEL_LOADED to STARTED', 'Worker 9001: no move from MODEL_LOADED to ERROR']);
  t.equal(wrong.state, 'MODEL_LOADED', 'and the state stays');
});

t.test('each worker gets its share of the cores, at least one thread', async (t) => {
  t.same(threadBudget({ maxWorkers: 1, adaptiveThreads: false }, 4), { intraOpThreads: 4, wideIntraOpThreads: undefined });
  t.same(threadBudget({ maxWorkers: 2, adaptiveThreads: false }, 4), { intraOpThreads: 2, wideIntraOpThreads: undefined });
  t.same(threadBudget({ maxWorkers: 3, adaptiveThreads: false }, 2), { intraOpThreads: 1, wideIntraOpThreads: undefined });
  t.same(threadBudget({ maxWorkers: 0, adaptiveThreads: false }, 2), { intraOpThreads: 2, wideIntraOpThreads: undefined });
});

t.test('adaptiveThreads adds every core for a lone batch, only where that is more than the share', async (t) => {
  t.same(threadBudget({ maxWorkers: 2, adaptiveThreads: true }, 4), { intraOpThreads: 2, wideIntraOpThreads: 4 });
  t.same(threadBudget({ maxWorkers: 4, adaptiveThreads: true }, 2), { intraOpThreads: 1, wideIntraOpThreads: 2 });
  t.same(threadBudget({ maxWorkers: 1, adaptiveThreads: true }, 4), { intraOpThreads: 4, wideIntraOpThreads: undefined }, 'one worker has them all already');
  t.same(threadBudget({ maxWorkers: 2, adaptiveThreads: true }, 1), { intraOpThreads: 1, wideIntraOpThreads: undefined }, 'one core');
});

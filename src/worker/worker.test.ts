import t from 'tap';
import { threadBudget } from './worker.js';

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

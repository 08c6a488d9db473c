// What the front end takes from a worker: a reply of a batch refused and run request by request
// has no workMs and stages counted for some of its requests (handler/run.ts's answerBatch); one
// was stopped as not of the worker protocol. Counts that are no counts still are refused.
import t from 'tap';
import { fromWorker } from './message-shape.js';

const reply = { key: 'w', kind: 'reply', batchId: 1, items: [{ id: 'a' }], metrics: [], workMs: 2, stages: [{ name: 'preprocess', start: 1, end: 2 }] };

t.test('a reply without workMs, its stages counted for some requests, is of the protocol', async (t) => {
  t.ok(fromWorker(reply), 'a batch answered as a batch');
  const { workMs: _, ...split } = reply;
  const stages = [
    { name: 'preprocess', start: 1, end: 2, requests: 0 },
    { name: 'inference', start: 2, end: 3, requests: 1 },
  ];
  t.ok(fromWorker({ ...split, stages }), 'a batch run request by request');
});

t.test('a workMs or a stage count that is no count is refused', async (t) => {
  t.equal(fromWorker({ ...reply, workMs: 'soon' }), undefined);
  for (const requests of [-1, 1.5, Number.NaN, '1']) {
    t.equal(fromWorker({ ...reply, stages: [{ name: 'inference', start: 1, end: 2, requests }] }), undefined, `requests ${String(requests)}`);
  }
});

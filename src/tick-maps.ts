/**
 * @module tick-maps
 * Keeps one of Node's `process.nextTick` entries alive for the life of the process, so that every
 * later one is made by V8's fast path. Node makes each entry as an object literal whose first three
 * keys are computed (its async ids' symbols and its context frame's); V8 records, per key, the
 * shape (map) the literal had before it, and turns that record generic, for good, the first time
 * a literal comes with another shape. The shapes after the first key are held by nothing but the
 * entries that have them: a full garbage collection while no entry is queued frees them, and the
 * next entry is made with new ones. A server's start-up (its modules, a model's archive) runs such
 * collections, and every nextTick after it (several a request) defined its three keys
 * through V8's runtime: 5-6% of the server's CPU in a flood of refusals (perf), where a bare
 * `node:http` server spent none. One entry kept from the first moment holds the shapes (each
 * holds the one before it), and the records stay as they were. The bin scripts and the worker
 * process's entry import this module first, before any collection can have run (a worker's
 * start loads onnxruntime and a model: collections of the same kind).
 */
import { createHook } from 'node:async_hooks';

/** The entry kept (exported so that nothing takes it for unused). */
export let keptTick: object | undefined;

const hook = createHook({
  init(_asyncId, type, _triggerAsyncId, resource) {
    if (type === 'TickObject' && keptTick === undefined) keptTick = resource;
  },
});
hook.enable();
process.nextTick(() => {});
hook.disable();

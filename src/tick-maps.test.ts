// A full garbage collection while no nextTick entry is queued turned V8's records of nextTick's
// literal generic for good, and every later nextTick went through V8's runtime (tick-maps.ts).
// A process that imports tick-maps first keeps them as they were: checked in a child process
// by V8's own print of nextTick's feedback (--allow-natives-syntax), against one that does not.
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';
import { keptTick } from './tick-maps.js';

const TICK_MAPS = pathToFileURL(fileURLToPath(new URL('../dist/src/tick-maps.js', import.meta.url))).href;

/** nextTick's feedback slots of its literal's computed keys, after ticks, two full collections and ticks again. */
function literalSlots(keepTicks: boolean): string[] {
  const script = `
    ${keepTicks ? `await import(${JSON.stringify(TICK_MAPS)});` : ''}
    const ticks = () => { for (let i = 0; i < 20; i++) process.nextTick(() => {}); };
    ticks();
    await new Promise((r) => setImmediate(r));
    globalThis.gc();
    globalThis.gc();
    ticks();
    await new Promise((r) => setImmediate(r));
    %DebugPrint(process.nextTick);`;
  const r = spawnSync(process.execPath, ['--expose-gc', '--allow-natives-syntax', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  return r.stdout.match(/DefineKeyedOwnPropertyInLiteral \w+/g) ?? [];
}

t.test('the module keeps a nextTick entry: an object with its callback', async (t) => {
  t.type((keptTick as { callback?: unknown } | undefined)?.callback, 'function');
});

const without = literalSlots(false);
const lost = without.some((s) => s.endsWith('MEGAMORPHIC'));

t.test(
  'nextTick keeps its fast path after a full collection with no entry queued',
  { skip: !lost && `this Node.js does not lose nextTick's fast path, or does not print its feedback: ${without.join(', ') || 'nothing printed'}` },
  async (t) => {
    const kept = literalSlots(true);
    t.ok(kept.length >= 3, `the literal's computed keys' slots printed: ${kept.join(', ')}`);
    t.notOk(
      kept.some((s) => s.endsWith('MEGAMORPHIC')),
      `none generic with an entry kept (without: ${without.join(', ')})`,
    );
  },
);

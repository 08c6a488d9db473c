import t from 'tap';
import { parseProperties } from './properties.js';

t.test('Java properties syntax', async (t) => {
  const p = parseProperties(
    [
      '# comment',
      '! also a comment',
      'a=1',
      'b : two',
      'c three',
      'models={"m": \\',
      '   {"1.0": {"minWorkers": 2}}}',
      'path=C\\:\\\\models',
      'unicode=\\u0041',
      '  spaced  =  value with spaces',
    ].join('\n'),
  );
  t.equal(p.get('a'), '1');
  t.equal(p.get('b'), 'two');
  t.equal(p.get('c'), 'three');
  t.equal(p.get('models'), '{"m": {"1.0": {"minWorkers": 2}}}');
  t.equal(p.get('path'), 'C:\\models');
  t.equal(p.get('unicode'), 'A');
  t.equal(p.get('spaced'), 'value with spaces');
  t.equal(p.size, 7);
});

t.test('$$ENV$$ substitution, and a missing variable is an error', async (t) => {
  t.equal(parseProperties('store=$$STORE$$/x', { STORE: '/data' }).get('store'), '/data/x');
  t.throws(() => parseProperties('store=$$NOPE$$', {}), /Invalid Environment Variable NOPE/);
});

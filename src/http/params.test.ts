// Parameters read as TorchServe reads them, and what the server says of those it cannot use.
import t from 'tap';
import { boolParam, intParam, registerCall, registerWarnings, requestParams, scaleCall, scaleWarnings } from './params.js';

t.test('integers that do not parse are absent; booleans are true only for "true", in any case', async (t) => {
  t.equal(intParam({ n: '12' }, 'n'), 12);
  t.equal(intParam({ n: 'abc' }, 'n'), undefined);
  t.equal(intParam({}, 'n'), undefined);
  t.equal(boolParam({ b: 'TRUE' }, 'b', false), true);
  t.equal(boolParam({ b: 'yes' }, 'b', true), false, 'anything else is false, even with a true default');
  t.equal(boolParam({}, 'b', true), true, 'the default when absent');
});

t.test('register warnings: a number that does not parse or is too small, a flag that is neither, an unknown name with the nearest', async (t) => {
  t.same(registerWarnings({ url: 'a.mar', batch_size: '4', synchronous: 'false' }), [], 'good parameters: none');
  t.same(registerWarnings({ batch_size: 'dd', max_batch_delay: '-1', initial_workers: '-2', synchronous: 'maybe', batchsize: '8' }), [
    'batch_size="dd" is not a whole number; the default is used',
    'max_batch_delay="-1" is less than 0; the default is used',
    'initial_workers="-2" is less than 0; 0 is used',
    'synchronous="maybe" is not true or false; false is used',
    'unknown parameter "batchsize" (did you mean batch_size?) is ignored',
  ]);
  t.same(registerWarnings({ zzzzzz: '1' }), ['unknown parameter "zzzzzz" is ignored'], 'no near name: none suggested');
});

t.test('scale warnings are read by the scale rules: timeout may be -1, a register parameter is unknown there', async (t) => {
  t.same(scaleWarnings({ min_worker: '1', max_worker: '2', timeout: '-1' }), []);
  t.same(scaleWarnings({ min_worker: 'abc', batch_size: '2' }), [
    'min_worker="abc" is not a whole number; the default is used',
    'unknown parameter "batch_size" is ignored',
  ]);
});

t.test('a register call is synchronous unless told; a scale call is not, unless told', async (t) => {
  t.match(registerCall({ url: 'm.mar', batch_size: '4', initial_workers: 'x' }), {
    url: 'm.mar',
    batchSize: 4,
    initialWorkers: undefined,
    synchronous: true,
    warnings: ['initial_workers="x" is not a whole number; the default is used'],
  });
  t.match(scaleCall({ min_worker: '2' }), { minWorkers: 2, maxWorkers: undefined, synchronous: false, warnings: [] });
  t.equal(scaleCall({ synchronous: 'true' }).synchronous, true);
});

t.test('query parameters take the last of repeated values; a JSON body adds its fields; a nested field is a 400', async (t) => {
  t.same(requestParams({ a: ['1', '2'], b: 'x' }, undefined, undefined), { a: '2', b: 'x' });
  const body = Buffer.from(JSON.stringify({ url: 'm.mar', batch_size: 4, synchronous: true, skipped: null }));
  t.same(requestParams({ a: '1' }, body, 'application/json'), { a: '1', url: 'm.mar', batch_size: '4', synchronous: 'true' });
  t.same(requestParams({}, body, 'text/plain'), {}, 'only a JSON body is read');
  t.same(requestParams({}, Buffer.from('{not json'), 'application/json'), {}, 'a body that does not parse adds nothing');
  t.same(requestParams({}, Buffer.from('[1, 2]'), 'application/json'), {}, 'nor does a list');
  t.throws(() => requestParams({}, Buffer.from('{"url": {"nested": 1}}'), 'application/json'), {
    code: 'TSS_ERR_HTTP_BAD_REQUEST',
    status: 400,
    message: 'Parameter url must be a string, a number or a boolean.',
  });
});

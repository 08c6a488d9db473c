// What a batch's failure becomes on the wire: the handler's own errors keep their status, memory
// exhaustion is TorchServe's 507, anything else the generic prediction failure.
import t from 'tap';
import { tsError } from '../errors.js';
import { toWireError } from './run.js';
import { PredictionError } from './types.js';

t.test('toWireError classifies what a handler throws', async (t) => {
  t.match(toWireError(new RangeError('Array buffer allocation failed')), { code: 'TSS_ERR_PREDICTION_OUT_OF_RESOURCES', status: 507 });
  t.match(toWireError(new RangeError('Invalid typed array length: 99999999999')), { code: 'TSS_ERR_PREDICTION_OUT_OF_RESOURCES', status: 507 });
  t.match(toWireError(new RangeError('Maximum call stack size exceeded')), { code: 'TSS_ERR_PREDICTION_FAILED' }, 'another RangeError');
  t.match(toWireError(new TypeError('out of memory')), { code: 'TSS_ERR_PREDICTION_FAILED' }, 'the words alone are not enough');
  t.match(toWireError('out of memory'), { code: 'TSS_ERR_PREDICTION_FAILED' }, 'nor a thrown string');
  t.match(toWireError(new PredictionError('bad image', 400)), { code: 'TSS_ERR_PREDICTION_HANDLER', status: 400, message: 'bad image' });
  t.match(toWireError(tsError('TSS_ERR_WORKER_DIED')), { code: 'TSS_ERR_WORKER_DIED', status: 500 });
});

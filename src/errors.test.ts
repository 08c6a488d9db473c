import t from 'tap';
import { errorCodes, errorFromWire, tsError, TsError } from './errors.js';

t.test('every code builds a TorchServe-shaped body', async (t) => {
  for (const code of errorCodes) {
    t.match(code, /^TSS_ERR_[A-Z]+(_[A-Z]+)*$/, `${code} is named by area`);
    const err = tsError(code, 'x', 'y');
    const body = err.toJSON();
    t.same(Object.keys(body), ['code', 'type', 'message'], `${code} body keys`);
    t.ok(body.code >= 400 && body.code < 600, `${code} status`);
    t.match(body.type, /(Exception)$/, `${code} type is a Java exception name`);
  }
});

t.test('templates are filled in order; wire errors come back by code', async (t) => {
  t.equal(tsError('TSS_ERR_MODEL_VERSION_NOT_FOUND', '2.0', 'm').message, 'Model version: 2.0 does not exist for model: m');
  const back = errorFromWire('TSS_ERR_PREDICTION_HANDLER', 'custom', 599);
  t.ok(back instanceof TsError);
  t.equal(back.status, 599);
  t.equal(errorFromWire('SOMETHING_ELSE', 'm').code, 'TSS_ERR_INTERNAL', 'unknown codes are internal errors');
});

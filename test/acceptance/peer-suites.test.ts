// TorchServe's own management suite (its Postman collection's requests and assertions, its data
// file management_data.json) run with newman against tsserve through scripts/peer-suites.mjs, as
// .ci/run runs all of TorchServe's suites. The data files are TorchServe's, beside the clone in
// ../shared/peer-tests (TSSERVE_PEER_DATA names another folder); without them there is nothing to run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from '../helpers.js';

const DATA = process.env.TSSERVE_PEER_DATA ?? join(ROOT, '..', 'shared', 'peer-tests');

t.test(
  "TorchServe's management collection passes against tsserve (newman, all 82 calls)",
  { skip: existsSync(join(DATA, 'management_data.json')) ? false : `no TorchServe data files in ${DATA}` },
  async (t) => {
    const run = spawnSync(process.execPath, ['--no-deprecation', join(ROOT, 'scripts', 'peer-suites.mjs'), '--data', DATA, '--only', 'management'], {
      encoding: 'utf8',
      timeout: 150_000,
    });
    const out = `${run.stdout}${run.stderr}`;
    t.equal(run.status, 0, out);
    t.match(run.stdout, /^management: 82 passed, 0 failed$/m, 'newman counts one passed assertion per call');
    t.equal(run.stdout.trim().split('\n').at(-1), '82 passed, 0 failed', 'the last line is the sum, as .ci/run reads it');
  },
);

// The workflow API answers as TorchServe 0.12's, whose code disables workflow registration: a
// 400 to register, an empty list, 404 for any named workflow, on both listeners.
import t from 'tap';
import { errorBody, startTestServer } from './helpers.js';

t.test('workflow management and /wfpredict as TorchServe 0.12 answers them', async (t) => {
  const server = await startTestServer(t);
  const register = await fetch(`${server.urls.management}/workflows?url=wf.war&workflow_name=wf`, { method: 'POST' });
  t.equal(register.status, 400);
  t.same(await errorBody(register), { code: 400, type: 'BadRequestException', message: 'Registering new workflows is disabled.' });
  t.same(await (await fetch(`${server.urls.management}/workflows`)).json(), { workflows: [] });
  for (const [url, method] of [
    [`${server.urls.management}/workflows/wf`, 'GET'],
    [`${server.urls.management}/workflows/wf`, 'DELETE'],
    [`${server.urls.inference}/wfpredict/wf`, 'POST'],
  ] as const) {
    const res = await fetch(url, { method, ...(method === 'POST' ? { body: 'x' } : {}) });
    t.equal(res.status, 404, `${method} ${url.replace(/http:\/\/[^/]+/, '')}`);
    t.same(await errorBody(res), { code: 404, type: 'WorkflowNotFoundException', message: 'Workflow not found: wf' });
  }
});

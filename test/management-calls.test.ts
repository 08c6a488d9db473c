import t from 'tap';
import { buildColoursMar, startTestServer } from './helpers.js';

type Call = [method: string, path: string, status: number];

const CALLS: Call[] = [
  ['POST', '/models?url=colours.mar&model_name=colours', 200],
  ['POST', '/models?url=colours.mar&model_name=broken&handler=invalidHandler', 200],
  ['PUT', '/models/broken?min_worker=1&synchronous=true', 500],
  ['DELETE', '/models/broken', 200],
  ['POST', '/models', 400],
  ['POST', '/models?url=colours.mar&model_name=colours', 409],
  ['POST', '/models?url=colours.mar&model_name=py4&runtime=python4', 400],
  ['GET', '/models?limit=&next_page_token=', 200],
  ['PUT', '/models/colours?min_worker=1', 202],
  ['PUT', '/models/colours?min_worker=1&synchronous=true', 200],
  ['PUT', '/models/colours/1.0?min_worker=1&synchronous=true', 200],
  ['PUT', '/models/colours/0.0?min_worker=1&synchronous=true', 404],
  ['PUT', '/models/colours?min_worker=1&number_gpu=1', 202],
  ['PUT', '/models/colours/1.0/set-default', 200],
  ['PUT', '/models/colours/0.0/set-default', 404],
  ['PUT', '/models/nothing/1.0/set-default', 404],
  ['POST', '/models?url=colours.mar&model_name=slow&batch_size=3&initial_workers=3&startup_timeout=0', 500],
  ['POST', '/models?url=colours.mar&model_name=slow&startup_timeout=0', 200],
  ['POST', '/models?url=colours.mar&model_name=dd&batch_size=dd&initial_workers=1', 200],
  ['POST', '/models?url=colours.mar&model_name=junk&batch_size=2&initial_workers=1&max_batch_delay=junk', 200],
  ['POST', '/models?url=colours.mar&model_name=negative&initial_workers=-1', 200],
  ['POST', '/models?url=colours.mar&model_name=nonbool&synchronous=-1', 200],
  ['PUT', '/models/colours?timeout=-1', 202],
  ['PUT', '/models/colours?min_worker=1&synchronous=Nan', 202],
  ['PUT', '/models/colours?min_worker=nan&synchronous=nan', 202],
  ['PUT', '/models/colours', 202],
  ['PUT', '/models/nothing?min_worker=1', 404],
  ['PUT', '/models/colours?min_worker=2&max_worker=1', 400],
  ['PUT', '/models/colours?min_worker=0', 202],
  ['PUT', '/models/colours?min_worker=-1', 500],
  ['PUT', '/models/colours?max_worker=-1', 400],
  ['GET', '/models/colours/0.0', 404],
  ['DELETE', '/models/colours/0.0', 404],
  ['DELETE', '/models/slow/?synchronous=true', 200],
  ['DELETE', '/models/dd/?synchronous=nan', 200],
  ['DELETE', '/models/junk/?timeout=true&synchronous=-1', 200],
  ['DELETE', '/models/nothing', 404],
];

t.test("TorchServe's management call sequence answers with TorchServe's status codes", async (t) => {
  const server = await startTestServer(t, {
    prepare: (store) => buildColoursMar(store),
    properties: { default_workers_per_model: '0' },
  });
  for (const [method, path, status] of CALLS) {
    const res = await fetch(`${server.urls.management}${path}`, { method });
    const body = await res.text();
    t.equal(res.status, status, `${method} ${path}`);
    t.match(body, /^\{\n|^\[\n/, `${method} ${path}: Gson-style JSON`);
  }
});

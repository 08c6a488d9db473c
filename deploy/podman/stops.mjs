// Stopped at any moment, each process of the image exits promptly and cleanly: tsserve stopped at
// several moments of its start-up (loading models, starting workers, warming up), and tsserve-app
// with nothing in flight. Pods are stopped during start-up all the time (rollouts, scale-down, a
// failing probe): a SIGTERM then must not wait out the grace period.
import { connect } from 'node:net';
import { check, exitCode, fact, freePort, logsOf, podman, podmanTimed, podmanTry, sleep, ULIMITS, waitFor } from './lib.mjs';

/** What "promptly" means here: well inside any grace period, with nothing to drain. */
const PROMPT_MS = 5000;
const GRACE_S = '30';
const AFTER_START_S = [0.5, 1, 2, 4, 8];

/** Runs `argv` in the image as the pods do (uid 1000, no capabilities); its name. */
function run(image, name, ports, argv) {
  podmanTry('rm', '-f', name);
  podman('run', '-d', '--name', name, ...ULIMITS, '--network', 'slirp4netns', ...ports.flatMap(([inner, outer]) => ['-p', `127.0.0.1:${outer}:${inner}`]),
    '--user', '1000', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', image, ...argv);
  return name;
}

/** Stops `name` with SIGTERM and a grace period; checks it exited 0 within PROMPT_MS. */
async function stopPromptly(name, what) {
  const ms = await podmanTimed('stop', '-t', GRACE_S, name);
  const code = exitCode(name);
  fact(`${what}: stop took (ms), exit code`, `${ms}, ${code}`);
  if (!check(`${what}: exits 0 within ${PROMPT_MS} ms of SIGTERM`, code === '0' && ms < PROMPT_MS, `exit code ${code} after ${ms} ms`)) console.log(logsOf(name));
  podmanTry('rm', '-f', name);
}

const listening = (port) =>
  new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket.end() && true));
    socket.on('error', () => resolve(false));
  });

export async function checkStops(image) {
  console.log('\n# stops: tsserve during start-up, tsserve-app idle');
  for (const seconds of AFTER_START_S) {
    const name = run(image, `tsserve-stop-${process.pid}`, [], ['torchserve', '--start', '--models', 'mnist=mnist.mar', '--disable-token-auth']);
    await sleep(seconds * 1000);
    await stopPromptly(name, `tsserve stopped ${seconds} s after podman run`);
  }
  const port = await freePort();
  const app = run(image, `tsserve-app-stop-${process.pid}`, [[5000, port]], ['tsserve-app', '--host', '0.0.0.0', '--port', '5000']);
  check('tsserve-app listens', await waitFor(() => listening(port), 30_000), logsOf(app));
  await stopPromptly(app, 'tsserve-app with nothing in flight');
}

/**
 * `tsserve` and `tsserve-archiver` run by their own main() inside the test process, for what a
 * command decides without a server (validation messages, usage errors, --version, an archive
 * built): its exit status and output, as a spawned one from `cwd` gives them, in milliseconds.
 * What needs the process (a real exit status, a server started, a signal, a Node.js warning on
 * stderr) is spawned in test/.
 */
type Main = (argv: string[]) => Promise<void>;

/** Thrown in place of process.exit: the command ended here with `status`. */
class Exited extends Error {
  readonly status: number;
  constructor(status: number) {
    super(`exit ${status}`);
    this.status = status;
  }
}

let loaded: Promise<Main> | undefined;

/**
 * The CLI names its PID file from the working directory and TMPDIR once, when it is imported, and
 * its stop-signal module catches SIGTERM, SIGINT and SIGHUP for the server it would start: both
 * are fixed for this process from the first `cwd`, and the signals given back to the test runner.
 */
function tsserveMain(cwd: string): Promise<Main> {
  loaded ??= (async () => {
    const before = { dir: process.cwd(), tmp: process.env.TMPDIR };
    process.chdir(cwd);
    process.env.TMPDIR = cwd;
    try {
      const { main } = await import('../../src/cli/tsserve.js');
      const { defaultStopSignals } = await import('../../src/cli/stop-signal.js');
      defaultStopSignals();
      return main;
    } finally {
      process.chdir(before.dir);
      if (before.tmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before.tmp;
    }
  })();
  return loaded;
}

export interface CliRun {
  /** The exit status: 0 when the command returned. */
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout, then stderr, as `tsserve()` in test/helpers.ts gives them. */
  readonly out: string;
}

/**
 * Runs `tsserve <args>` from `cwd` to its end (or its exit). The commands these tests run end
 * within a turn of the event loop; one that does not is an error.
 */
export async function runTsserve(args: string[], cwd: string): Promise<CliRun> {
  return runCli(`tsserve ${args.join(' ')}`, await tsserveMain(cwd), args, cwd);
}

/** Runs `tsserve-archiver <args>` from `cwd`, with `env` added to the environment, to its end (or its exit). */
export async function runArchiver(args: string[], cwd: string, env: Record<string, string> = {}): Promise<CliRun> {
  const { main } = await import('../../src/cli/archiver.js');
  return runCli(`tsserve-archiver ${args.join(' ')}`, main, args, cwd, env);
}

/**
 * Runs a CLI's main() from `cwd` with `env`, its exit taken for an exception and its output for
 * the answer, all given back when it ends; one that has not ended within a turn of the event loop
 * (gone on, as to start a server) is an error. Meanwhile the test runner, waiting for it, writes
 * nothing.
 */
async function runCli(what: string, main: (argv: string[]) => unknown, args: string[], cwd: string, env: Record<string, string> = {}): Promise<CliRun> {
  const written = { stdout: '', stderr: '' };
  const take =
    (stream: 'stdout' | 'stderr') =>
    (chunk: string | Uint8Array): boolean => {
      written[stream] += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      return true;
    };
  const saved = { exit: process.exit, stdout: process.stdout.write, stderr: process.stderr.write, dir: process.cwd() };
  const savedEnv = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  process.exit = (code?: number | string | null) => {
    throw new Exited(Number(code ?? 0));
  };
  process.stdout.write = take('stdout') as typeof process.stdout.write;
  process.stderr.write = take('stderr') as typeof process.stderr.write;
  process.chdir(cwd);
  Object.assign(process.env, env);
  const answer = (status: number): CliRun => ({ status, ...written, out: written.stdout + written.stderr });
  try {
    const ran = Promise.resolve().then(() => main(args));
    const ended = await Promise.race([ran.then(() => true), new Promise<false>((resolve) => setImmediate(resolve, false))]);
    if (!ended) throw new Error(`${what} went on past its checks, as to start a server; it wrote: ${written.stdout}${written.stderr}`);
    return answer(0);
  } catch (err) {
    if (err instanceof Exited) return answer(err.status);
    throw err;
  } finally {
    process.exit = saved.exit;
    process.stdout.write = saved.stdout;
    process.stderr.write = saved.stderr;
    process.chdir(saved.dir);
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

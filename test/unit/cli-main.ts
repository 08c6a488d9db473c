/**
 * `tsserve <args>` run by its own main() inside the test process, for what its command line
 * decides before a server starts (validation messages, usage errors, --version): its exit status
 * and output, as a spawned `tsserve` from `cwd` with TMPDIR `cwd` gives them, in milliseconds.
 * What needs the process (a real exit status, a server started, a signal) is spawned in test/.
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

/**
 * Runs `tsserve <args>` from `cwd` to its end (or its exit): its exit status, 0 when it returned,
 * and what it wrote. The commands these tests run end within a turn of the event loop, before
 * the test runner writes again; one that does not is an error.
 */
export async function runTsserve(args: string[], cwd: string): Promise<{ status: number; out: string }> {
  const main = await tsserveMain(cwd);
  let out = '';
  const take = (chunk: string | Uint8Array): boolean => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  };
  const saved = { exit: process.exit, stdout: process.stdout.write, stderr: process.stderr.write, dir: process.cwd() };
  process.exit = (code?: number | string | null) => {
    throw new Exited(Number(code ?? 0));
  };
  process.stdout.write = take as typeof process.stdout.write;
  process.stderr.write = take as typeof process.stderr.write;
  process.chdir(cwd);
  try {
    const ended = await Promise.race([main(args).then(() => ({ status: 0 })), new Promise<undefined>((resolve) => setImmediate(resolve, undefined))]);
    // A command that went on past its checks starts a server here: a failure to say, not to wait for.
    if (ended === undefined) throw new Error(`tsserve ${args.join(' ')} went on past its checks, as to start a server; it wrote: ${out}`);
    return { status: ended.status, out };
  } catch (err) {
    if (err instanceof Exited) return { status: err.status, out };
    throw err;
  } finally {
    process.exit = saved.exit;
    process.stdout.write = saved.stdout;
    process.stderr.write = saved.stderr;
    process.chdir(saved.dir);
  }
}

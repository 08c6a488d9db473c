/**
 * @module cli/tsserve
 * `tsserve --start | --stop | --version`, with torchserve's flags. `--start` without
 * `--foreground` (or TSSERVE_FOREGROUND=true) launches the server as a background process and
 * returns once it serves, with its output in LOG_LOCATION/ts_log.log, its exit status saying how
 * the start went (EXIT_STATUS_HELP); `--stop` ends it through the PID file.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { ConfigError, loadServerConfig, type CliOverrides } from '../config/server-config.js';
import { createLoggers, recordProcessOutput, type Loggers } from '../log/loggers.js';
import type { RunningServer } from '../server.js';
import type { StartupOutcome } from '../models/registration.js';
import { replaceFileSync } from '../replace-file.js';
import { VERSION } from '../version.js';
import { defaultStopSignals, interruptedStatus, isStopSignal, onStop, stopAsked } from './stop-signal.js';
import { exitTwoOnUsageError } from './usage.js';

/**
 * One PID file per user and working directory, where TorchServe keeps one per temp dir: `--stop`
 * stops the server started from this directory, never another user's or another project's on
 * a shared host. The file holds the PID, then the directory, for the hint `--stop` gives.
 */
const PID_PREFIX = `.tsserve-${process.getuid?.() ?? 0}-`;
const PID_FILE = join(tmpdir(), `${PID_PREFIX}${createHash('sha256').update(process.cwd()).digest('hex').slice(0, 16)}.pid`);
const START_TIMEOUT_MS = 120_000;
/** What a stop may take beyond drain_timeout (closing listeners, the shutdown snapshot) before the process exits anyway. */
const STOP_GRACE_MS = 10_000;
/** How often `--start` says it is still waiting for the models, and `--stop` for the drain. */
const PROGRESS_EVERY_MS = 5_000;
/** How long `--stop` waits for a server that does not end its own stop (a wedged event loop). */
const STOP_WAIT_MS = 15 * 60_000;
/**
 * `--start`'s exit statuses beside 0 (started, every start-up model serves) and 2 (a usage error):
 * the server did not start, nothing of it runs; or it started and runs, but start-up models do
 * not serve (TorchServe's launcher says 0 either way and leaves the reason in its log).
 */
const EXIT_NOT_STARTED = 1;
const EXIT_MODELS_FAILED = 3;
const EXIT_STATUS_HELP = `
Exit status of --start: 0 started, every start-up model serves; ${EXIT_NOT_STARTED} did not start (nothing runs);
2 a usage error; ${EXIT_MODELS_FAILED} started, but start-up models failed: each is named with its reason, and
the server keeps serving the others (as TorchServe does) until tsserve --stop. Interrupted while it waits
(Ctrl-C, SIGTERM), --start stops the server it launched and exits as a shell says of a signal (130, 143).
A SIGTERM, SIGINT or SIGHUP to the server, at any moment of its start too, stops it; in the foreground it exits 0.`;

/** What the server `--start` launched tells it, over the IPC channel, once it serves or cannot. */
type Launch =
  | { kind: 'ready'; urls: RunningServer['urls']; outcome: StartupOutcome }
  | { kind: 'failed'; message: string }
  /** It ended without saying why (a crash). */
  | { kind: 'ended'; why: string }
  /** It ended with status 0 before it served: a stop was asked for during its start. */
  | { kind: 'stopped' }
  /** It said nothing within START_TIMEOUT_MS: it may still be starting, and its PID file stays for --stop. */
  | { kind: 'timeout' };

interface Flags extends CliOverrides {
  start?: boolean;
  stop?: boolean;
  foreground?: boolean;
  logConfig?: string;
  workflowStore?: string;
  cppLogConfig?: string;
  pluginsPath?: string;
}

/** torchserve's aliases, which commander cannot declare beside the long names. */
const ALIASES: Record<string, string> = { '--no-config-snapshots': '--ncs', '--dt': '--disable-token-auth', '--ppath': '--plugins-path' };

export async function main(argv: string[]): Promise<void> {
  const program = exitTwoOnUsageError(new Command('tsserve'))
    .description('tsserve: a TorchServe-compatible model server for ONNX models')
    .option('--start', 'start the model server')
    .option('--stop', 'stop the model server')
    .option('-v, --version', 'print the version and exit')
    .option('--foreground', 'stay attached and serve in this process')
    .option('--model-store <dir>', 'model store directory (overrides model_store)')
    .option('--models <models...>', 'models to load at start: name=file.mar, file.mar, or all')
    .option('--ts-config <file>', 'configuration file (config.properties)')
    .option('--log-config <file>', 'accepted for compatibility; tsserve logs with pino')
    .option('--workflow-store <dir>', 'accepted for compatibility (checked to exist): workflows are disabled, as in TorchServe 0.12')
    .option('--cpp-log-config <file>', 'accepted for compatibility (checked to exist): tsserve has no C++ backend')
    .option('--plugins-path <dir>', 'accepted for compatibility (alias --ppath): TorchServe plugins are Java jars')
    .option('--ncs', 'no config snapshots: neither write nor restore them (alias --no-config-snapshots)')
    .option('--disable-token-auth', 'disable token authorization (alias --dt)')
    .option('--enable-model-api', 'allow model register and unregister through the management API')
    .addHelpText('after', EXIT_STATUS_HELP)
    .allowExcessArguments(false);
  program.parse(
    argv.map((a) => ALIASES[a] ?? a),
    { from: 'user' },
  );
  const flags = program.opts<Flags & { version?: boolean }>();
  const chosen = [flags.start, flags.stop, flags.version].filter(Boolean).length;
  if (chosen > 1) program.error('error: --start, --stop and --version are mutually exclusive');
  if (flags.version) {
    defaultStopSignals();
    console.log(`tsserve Version is ${VERSION}`);
    return;
  }
  if (flags.stop) {
    defaultStopSignals();
    return stop();
  }
  // A container's main process must stay: the image sets TSSERVE_FOREGROUND=true, so the
  // `torchserve --start ...` that KServe's runtime passes serves in the foreground, signals and all.
  if (flags.foreground || process.env.TSSERVE_FOREGROUND === 'true') return serveInForeground(flags);
  return startInBackground(argv, flags);
}

/**
 * `vmargs` in config.properties: TorchServe's launcher passes it to the JVM of its frontend;
 * tsserve's passes the Node.js options in it (`--max-old-space-size=512`, `--max-semi-space-size=1`)
 * to the server process. JVM options (`-Xmx4g`, `-XX:...`, `-D...`) from an old configuration
 * are left out with a warning: Node would refuse to start with them.
 */
export function nodeOptionsFromVmargs(vmargs: string | undefined): { node: string[]; ignored: string[] } {
  const words = (vmargs ?? '').split(/\s+/).filter(Boolean);
  return { node: words.filter((w) => w.startsWith('--')), ignored: words.filter((w) => !w.startsWith('--')) };
}

function reportVmargs(options: { node: string[]; ignored: string[] }): void {
  if (options.ignored.length > 0) {
    console.log(
      `Warning: vmargs: ignoring JVM parameters ${options.ignored.join(' ')} (tsserve runs on Node.js; give Node.js options such as --max-old-space-size=4096)`,
    );
  }
  if (options.node.length > 0) console.log(`Warning: tsserve is using non-default Node.js parameters: ${options.node.join(' ')}`);
}

/** The configuration, checked as TorchServe's launcher checks it; `quiet`: its warnings were said already. */
function validate(flags: Flags, quiet = false): ReturnType<typeof loadServerConfig> {
  if (flags.logConfig && !existsSync(flags.logConfig)) fail(`--log-config file not found: ${resolve(flags.logConfig)}`);
  if (flags.modelStore && !isDirectory(flags.modelStore)) fail(`--model-store directory not found: ${flags.modelStore}`);
  if (flags.workflowStore && !isDirectory(flags.workflowStore)) fail(`--workflow-store directory not found: ${flags.workflowStore}`);
  if (flags.cppLogConfig && !existsSync(flags.cppLogConfig)) fail(`--cpp-log-config file not found: ${flags.cppLogConfig}`);
  try {
    const config = loadServerConfig(flags);
    if (!quiet) for (const warning of config.warnings) console.log(`Warning: ${warning}`);
    if (!config.modelStore) fail('Missing mandatory parameter --model-store');
    if (!isDirectory(config.modelStore)) fail(`--model-store directory not found: ${config.modelStore}`);
    return config;
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
}

async function serveInForeground(flags: Flags): Promise<void> {
  const running = runningPid();
  if (running !== undefined && running !== process.pid) fail('tsserve is already running, please use tsserve --stop to stop tsserve.');
  const launched = process.send !== undefined;
  // The server log says the configuration's warnings (and `tsserve --start` said them).
  const config = validate(flags, true);
  writePidFile(process.pid);
  // Started by `tsserve --start`, this process writes ts_log.log itself, so that it rolls.
  const loggers = createLoggers(config.logLocation, {
    metricsLocation: config.metricsLocation,
    format: config.logFormat,
    rolling: config.logRolling,
    serverLogFile: launched,
  });
  // Its own lines are records of the server log where they would be bare lines among records in
  // a file (ts_log.log) or among JSON ones (a container's log under log_format=json).
  const recorded = launched || config.logFormat === 'json';
  if (recorded) recordProcessOutput(loggers);
  // Started by `tsserve --start`, this process already runs with them; started by hand, it cannot.
  if (!launched && nodeOptionsFromVmargs(config.properties.get('vmargs')).node.length > 0) {
    console.log('Warning: vmargs applies to `tsserve --start` without --foreground; in the foreground, give Node.js options to node itself (NODE_OPTIONS)');
  }
  // Whatever the disk or a worker does, a stop ends: the models' drain is bounded by
  // drain_timeout, and nothing else (a log flush, a snapshot) may hold it much longer.
  onStop(() => {
    setTimeout(
      () => {
        console.error(`tsserve did not stop within drain_timeout (${config.drainTimeout} s) and ${STOP_GRACE_MS} ms; exiting`);
        process.exit(1);
      },
      config.drainTimeout * 1000 + STOP_GRACE_MS,
    ).unref();
  });
  // The server's modules are loaded here only: `--stop`, `--version` and the `--start` that
  // launches this process never need them.
  const { startServer } = await import('../server.js');
  // A stop asked for during the start ends it at its next step (startServer), and is a clean exit.
  const server = await startServer(config, loggers, stopAsked).catch((err: Error) =>
    stopAsked.aborted ? stoppedBeforeServing(loggers) : startFailed(`tsserve did not start: ${err.message}`, loggers, { launched, recorded }),
  );
  onStop(() => {
    void server.close().finally(() => {
      removePidFileOf(process.pid);
      process.exit(0);
    });
  });
  // Ready means ready to serve: the start-up models' workers have loaded (or failed to), so the
  // first requests after `--start` returns are not refused for want of a worker.
  const outcome = await server.startupModelsStarted;
  // Stopped while its models loaded: the stop under way ends the process; it never served.
  if (stopAsked.aborted) return;
  console.log('Model server started.');
  console.log(
    `Inference API: ${server.urls.inference}  Management API: ${server.urls.management}${server.urls.metrics ? `  Metrics API: ${server.urls.metrics}` : ''}`,
  );
  console.log(`gRPC inference: ${server.urls.grpcInference}  gRPC management: ${server.urls.grpcManagement}`);
  if (server.urls.kserve || server.urls.grpcKserve) console.log(`KServe: ${server.urls.kserve ?? '-'}  KServe gRPC: ${server.urls.grpcKserve ?? '-'}`);
  if (outcome.failed.length > 0) console.error(failedModelsReport(outcome));
  process.send?.({ kind: 'ready', urls: server.urls, outcome } satisfies Launch);
  process.disconnect?.();
}

/** A start a stop overtook before the server was up: what it had begun is closed (startServer); a clean exit. */
function stoppedBeforeServing(loggers: Loggers): never {
  console.log('tsserve stopped before it served: a stop was asked for during its start.');
  loggers.close();
  removePidFileOf(process.pid);
  process.exit(0);
}

async function startInBackground(argv: string[], flags: Flags): Promise<void> {
  if (runningPid() !== undefined) fail('tsserve is already running, please use tsserve --stop to stop tsserve.');
  const config = validate(flags);
  const vmargs = nodeOptionsFromVmargs(config.properties.get('vmargs'));
  reportVmargs(vmargs);
  const logDir = config.logLocation;
  mkdirSync(logDir, { recursive: true });
  // The server writes its records to ts_log.log itself, what it writes from JavaScript included
  // (recordProcessOutput). What the runtime prints past them (a fatal V8 error) is a bare line:
  // among text records as log4j's stack lines are, but beside JSON ones in a file of its own.
  const rawOutput = join(logDir, config.logFormat === 'json' ? 'ts_stdio.log' : 'ts_log.log');
  const out = openSync(rawOutput, 'a');
  // Interrupted before it launched anything: there is nothing to stop.
  if (stopAsked.aborted) process.exit(interruptedStatus());
  const child = fork(process.argv[1]!, [...argv.filter((a) => a !== '--start'), '--foreground'], {
    execArgv: [...process.execArgv, ...vmargs.node],
    detached: true,
    stdio: ['ignore', out, out, 'ipc'],
  });
  // The PID file names it from now on: `tsserve --stop` stops it during its start too.
  writePidFile(child.pid!, child);
  // Interrupted while it waits (Ctrl-C, a SIGTERM), `--start` stops the server it launched,
  // which runs detached and would otherwise go on starting with no one waiting for it.
  const forgetStop = onStop(() => child.kill('SIGTERM'));
  const begun = Date.now();
  // Loading many or large models takes a while: say so rather than sit silent.
  const waiting = setInterval(() => console.log(`tsserve is loading its models (${Math.round((Date.now() - begun) / 1000)} s)...`), PROGRESS_EVERY_MS);
  const launch = await launchOutcome(child);
  clearInterval(waiting);
  forgetStop();
  if (launch.kind !== 'ready' && stopAsked.aborted) {
    removePidFileOf(child.pid!);
    console.log('tsserve --start was interrupted: the server it launched stopped before it served.');
    process.exit(interruptedStatus());
  }
  if (launch.kind === 'stopped') {
    removePidFileOf(child.pid!);
    fail('tsserve stopped before it served: a stop was asked for during its start (tsserve --stop, or a signal).');
  }
  if (launch.kind !== 'ready') {
    // The server said why it failed; else the logs' last lines may.
    const tails = (): string => [...new Set([join(logDir, 'ts_log.log'), rawOutput])].map((file) => `The end of ${file}:\n${tail(file)}`).join('\n');
    if (launch.kind === 'timeout')
      fail(`tsserve did not answer within ${START_TIMEOUT_MS / 1000} s; it may still be starting (tsserve --stop stops it). ${tails()}`);
    removePidFileOf(child.pid!);
    fail(launch.kind === 'failed' ? launch.message : `tsserve did not start (${launch.why}). ${tails()}`);
  }
  child.disconnect();
  child.unref();
  console.log(`tsserve started (pid ${child.pid}); logs in ${logDir}`);
  if (launch.outcome.failed.length === 0) return;
  console.error(failedModelsReport(launch.outcome));
  console.error(`tsserve --stop stops it. Exit status ${EXIT_MODELS_FAILED}: started, but start-up models failed.`);
  process.exit(EXIT_MODELS_FAILED);
}

/** How the launch ended: the server's own word (ready or failed), else its end or the time-out. */
function launchOutcome(child: ChildProcess): Promise<Launch> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ kind: 'timeout' }), START_TIMEOUT_MS);
    const settle = (launch: Launch): void => {
      clearTimeout(timer);
      resolve(launch);
    };
    child.once('message', (message) => settle(message as Launch));
    // The PID file names the server from its fork, a few milliseconds before its first module
    // catches the stop signals: a `--stop` then ends it by the signal's default action. A stop all
    // the same, asked for during its start, not a start that failed.
    const ended = (code: number | null, signal: NodeJS.Signals | null): void =>
      settle(code === 0 || isStopSignal(signal) ? { kind: 'stopped' } : { kind: 'ended', why: `exit ${code ?? signal}` });
    // The channel closes after the last message is read: a server that closes it without one ended.
    child.once('disconnect', () => {
      if (child.exitCode !== null || child.signalCode !== null) ended(child.exitCode, child.signalCode);
      else child.once('exit', ended);
    });
  });
}

/**
 * A start that failed: said where the operator looks (`--start`'s console over the IPC channel,
 * the terminal in the foreground) and in the server log, with no PID file left behind.
 */
async function startFailed(message: string, loggers: Loggers, how: { launched: boolean; recorded: boolean }): Promise<never> {
  if (how.recorded) loggers.server.fatal(message);
  if (how.launched) await new Promise<void>((sent) => process.send!({ kind: 'failed', message } satisfies Launch, () => sent()));
  // The server log's last lines (why it failed) are on disk before the exit.
  loggers.close();
  removePidFileOf(process.pid);
  if (how.recorded) process.exit(EXIT_NOT_STARTED);
  return fail(message);
}

/** The start-up models that do not serve, for the console: how many do, then each that does not and why. */
function failedModelsReport(outcome: StartupOutcome): string {
  return [
    `${outcome.count - outcome.failed.length} of ${outcome.count} start-up models serve; these failed:`,
    ...outcome.failed.map((f) => `  ${f.model}: ${f.reason}`),
    'The server keeps running and serves the others, as TorchServe does.',
  ].join('\n');
}

function tail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-15).join('\n') : '(none)';
}

async function stop(): Promise<void> {
  const pid = runningPid();
  if (pid === undefined) {
    console.log('tsserve is not currently running.');
    for (const other of othersOfThisUser()) console.log(`A tsserve started from ${other.dir} (pid ${other.pid}) is: run tsserve --stop there.`);
    return;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    console.log('tsserve already stopped.');
    return;
  }
  // The server ends its own stop within its drain_timeout and 10 s more, whatever that is set to:
  // --stop waits for it, saying so, rather than give up at a fixed time while it still serves.
  // Past STOP_WAIT_MS it is wedged (its event loop blocked): that is said, and its files kept.
  const begun = Date.now();
  let said = begun;
  while (isAlive(pid) && Date.now() - begun < STOP_WAIT_MS) {
    await new Promise((r) => setTimeout(r, 100));
    if (Date.now() - said >= PROGRESS_EVERY_MS) {
      said = Date.now();
      console.log(`tsserve is answering what it accepted before the stop (${Math.round((said - begun) / 1000)} s; drain_timeout bounds it)...`);
    }
  }
  if (isAlive(pid)) {
    console.log(`tsserve (pid ${pid}) has not stopped after ${STOP_WAIT_MS / 60_000} minutes: it does not answer its stop. kill -9 ${pid} ends it.`);
    process.exit(1);
  }
  // Only now: tsserve-app reads the keys for as long as the server answers.
  rmSync('key_file.json', { force: true });
  rmSync(PID_FILE, { force: true });
  console.log('tsserve has stopped.');
}

/** The PID in the PID file if that process is alive and is a tsserve; removes an orphan file. */
function runningPid(): number | undefined {
  if (!existsSync(PID_FILE)) return undefined;
  const pid = readPidFile(PID_FILE).pid;
  if (isTsserve(pid)) return pid;
  console.log('Removing orphan pid file.');
  rmSync(PID_FILE, { force: true });
  return undefined;
}

/** Removes the PID file if it names `pid`: a server that did not start, or stopped. */
function removePidFileOf(pid: number): void {
  if (existsSync(PID_FILE) && readPidFile(PID_FILE).pid === pid) rmSync(PID_FILE, { force: true });
}

/** Writes the PID file; one that cannot be written (a full disk, a file in the way) ends the start, said in a line. */
function writePidFile(pid: number, launched?: ChildProcess): void {
  try {
    replaceFileSync(PID_FILE, `${pid}\n${process.cwd()}\n`);
  } catch (err) {
    launched?.kill('SIGKILL');
    fail(`tsserve did not start: its PID file ${PID_FILE} could not be written: ${(err as Error).message}`);
  }
}

function readPidFile(file: string): { pid: number; dir: string } {
  const [pid = '', dir = ''] = readFileSync(file, 'utf8').split('\n');
  return { pid: Number(pid.trim()), dir };
}

function isTsserve(pid: number): boolean {
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) && commandLine(pid).includes('tsserve');
}

/** This user's servers started from other directories, for the hint of a `--stop` that found none here. */
function othersOfThisUser(): Array<{ pid: number; dir: string }> {
  return readdirSync(tmpdir())
    .filter((name) => name.startsWith(PID_PREFIX) && name.endsWith('.pid'))
    .map((name) => readPidFile(join(tmpdir(), name)))
    .filter((other) => isTsserve(other.pid));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return 'tsserve';
  }
}

function isDirectory(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

function fail(message: string): never {
  console.error(message);
  process.exit(EXIT_NOT_STARTED);
}

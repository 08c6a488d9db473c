/**
 * @module workers/worker-host
 * A worker process as the front end holds it, apart from the models in it: its start (the
 * parent-death signal, its niceness and environment), its output, its message channel (bounded
 * in size, each message checked), and its exit. A worker of a model (worker-process.ts) lives in
 * a host: one started for it alone, as TorchServe's workers are, or, for a model that shares
 * (sharedWorker), one of the shared hosts (shared-hosts.ts) beside other models' workers. Each
 * message from the process goes to the worker whose key it names; its exit goes to every worker
 * in it, so that each answers what it held and its pool restarts it.
 */
import { fork, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { getPriority, setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { errorFromWire, tsError, type TsError } from '../errors.js';
import { procKilobytes, procKilobytesLater } from '../host-limits.js';
import { messageBound, responseTooLarge, watchMessageSize } from '../protocol/answer-size.js';
import { fromWorker } from '../protocol/message-shape.js';
import { readLines } from './output-lines.js';
import { permissionArgs } from './permissions.js';
import {
  INTRA_OP_THREADS_ENV,
  ORT_TELEMETRY_OFF,
  SHARED_HOST_ENV,
  WATCH_PARENT_ENV,
  WIDE_INTRA_OP_THREADS_ENV,
  type FromWorker,
  type ToWorker,
} from '../protocol/messages.js';

const ENTRY = fileURLToPath(new URL('../worker/entry.js', import.meta.url));

export interface HostOptions {
  readonly intraOpThreads: number;
  /** A lone batch's threads (adaptiveThreads); undefined: every batch runs with intraOpThreads. */
  readonly wideIntraOpThreads: number | undefined;
  /** Niceness added to the process: under contention the front end's reads and refusals come first. */
  readonly nice: number;
  /** The model directory Node's permission model lets it read (worker_permission); undefined: no permission model. */
  readonly permissionDir: string | undefined;
  /** The environment the process starts with (workerEnvironment). */
  readonly env: NodeJS.ProcessEnv;
  /** Serves several models (SHARED_HOST_ENV). */
  readonly shared: boolean;
  /** The largest answer (max_response_size): a larger one is refused before it is sent. */
  readonly maxResponseSize: number;
  /** Each line the process prints, with its stream. */
  readonly onOutput: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** A worker in a host: what the host tells it. */
export interface Tenant {
  /** The model it serves, `name_version`: a shared host holds at most one worker of each. */
  readonly model: string;
  /** The largest message its answers may take (protocol/answer-size.ts's messageBound). */
  readonly messageBound: number;
  /** What its load added to the host's PSS, measured in a shared host; undefined elsewhere. */
  readonly loadBytes: number | undefined;
  onMessage(msg: FromWorker): void;
  /** The process ended; `error` is what a batch it was running answers. */
  onHostExit(code: number | null, signal: NodeJS.Signals | null, error: TsError): void;
}

/**
 * Makes the process `nice` steps nicer than the server (at most 19), every thread of it
 * (reniceThreads). Past capacity the workers and the front end all want the cores; as equals, the
 * front end got its share late and requests it had not read, refusals included, waited in the
 * kernel for seconds (docs/performance.md, "Overload over 20 s, workers that yield the CPU, ...").
 * Set at its spawn, before a model loads, so that onnxruntime's threads inherit it; Node's own
 * threads may have started already.
 */
export function yieldToFrontEnd(pid: number | undefined, nice: number): void {
  if (nice === 0 || pid === undefined) return;
  reniceThreads(pid, Math.min(19, getPriority() + nice));
}

/** Passes over /proc/<pid>/task before a process's threads are taken as all set (reniceThreads). */
const RENICE_PASSES = 5;

/**
 * Makes every thread of process `pid` `nice` (absolute): Linux keeps a niceness per thread, and
 * setpriority on a pid changes its main thread's only; a thread inherits its starter's. The main
 * thread first, so that the threads it starts meanwhile inherit it; then the task list again until
 * a pass finds no thread not yet set. Where /proc has no task list, the pid's alone.
 */
function reniceThreads(pid: number, nice: number): void {
  const set = new Set<number>();
  let threads = [pid];
  for (let pass = 0; pass < RENICE_PASSES && threads.length > 0; pass++) {
    for (const tid of threads) {
      set.add(tid);
      try {
        setPriority(tid, nice);
      } catch {
        /* ended meanwhile, or already nicer */
      }
    }
    threads = taskIds(pid).filter((tid) => !set.has(tid));
  }
}

/** The process's thread ids; none without /proc, or once it ended. */
function taskIds(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return [];
  }
}

/**
 * Starts a worker process that dies with the front end, also after a `kill -9` leaves the front
 * end no moment to stop it, while the handler keeps the worker's main thread too busy to see its
 * IPC channel close. On Linux the kernel sees to it, at no cost: the worker runs under
 * util-linux's `setpriv --pdeathsig KILL` (PR_SET_PDEATHSIG, which Node has no call for; a native
 * addon for one prctl is not worth its build on every platform). Without setpriv, the worker
 * watches its parent from a thread of its own (worker/parent-watch.ts).
 */
function startProcess(env: NodeJS.ProcessEnv, execArgv: string[]): ChildProcess {
  const options: Pick<SpawnOptions, 'serialization' | 'stdio' | 'detached'> = {
    serialization: 'advanced',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    detached: OWN_GROUP,
  };
  const setpriv = parentDeathSignal();
  if (setpriv) return spawn(setpriv, ['--pdeathsig', 'KILL', '--', process.execPath, ...execArgv, ENTRY], { ...options, env });
  return fork(ENTRY, [], { ...options, execArgv, env: { ...env, [WATCH_PARENT_ENV]: '1' } });
}

/**
 * Each worker leads a process group of its own, so that what its handler starts (a shell-out, a
 * helper process) is in it and ends with it (endGroup): TorchServe users rely on a dead worker
 * leaving nothing behind. A process that leaves the group (setsid) is not followed. Windows has
 * no process groups to signal.
 */
const OWN_GROUP = process.platform !== 'win32';

/** Ends whatever is left of the process group `pid` led: the processes its handler started. */
function endGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!OWN_GROUP || pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    /* the group is empty: nothing was left */
  }
}

let setprivPath: string | undefined | null = null;

/** setpriv's path, when it is there and knows --pdeathsig (util-linux 2.33 and later); looked for once. */
function parentDeathSignal(): string | undefined {
  if (setprivPath === null) setprivPath = process.platform === 'linux' ? findSetpriv() : undefined;
  return setprivPath;
}

function findSetpriv(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const path = join(dir, 'setpriv');
    try {
      accessSync(path, constants.X_OK);
    } catch {
      continue;
    }
    return spawnSync(path, ['--help'], { encoding: 'utf8', timeout: 5000 }).stdout?.includes('--pdeathsig') ? path : undefined;
  }
  return undefined;
}

/**
 * The server's environment without the variables `blacklist_env_vars` names (secrets a handler
 * has no business reading), as TorchServe gives its workers.
 */
export function workerEnvironment(env: NodeJS.ProcessEnv, blacklist: RegExp | undefined): NodeJS.ProcessEnv {
  return blacklist ? Object.fromEntries(Object.entries(env).filter(([name]) => !blacklist.test(name))) : env;
}

/** glibc's starting mmap threshold, 128 KiB, made fixed. */
export const MALLOC_MMAP_THRESHOLD = { MALLOC_MMAP_THRESHOLD_: '131072' };

/**
 * `env` with glibc malloc's mmap threshold fixed at its starting value, unless the operator set
 * malloc's tunables already. glibc raises the threshold each time a block it mapped is freed, up
 * to 32 MiB, so that the large blocks onnxruntime allocates while it opens a model (the weights
 * as read from the file, before the optimiser rewrites them) end up in the heap, where freeing
 * them returns nothing to the system: a resnet18 worker held 168 MB instead of 80, and no less
 * CPU per run (bench/memory.mjs, issue 33). With the threshold fixed, every block of 128 KiB or
 * more is mapped and unmapped on its own. Other C libraries (musl) ignore the variable.
 */
export function mallocReturningMemory(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const set = Object.keys(env).some((name) => name.startsWith('MALLOC_') || name === 'GLIBC_TUNABLES');
  return set ? env : { ...env, ...MALLOC_MMAP_THRESHOLD };
}

/** The window over which a host's batches are counted (recentBatches). */
const BUSY_WINDOW_MS = 1000;
/**
 * The longest one load holds the host's turn: a load that never settles (its handler hangs) ends
 * at its startup timeout, but the loads behind it need not wait that long for theirs; they run
 * beside it, and their growth is measured less exactly.
 */
const LOAD_TURN_MS = 15_000;
/**
 * How old a process's last PSS reading (smaps_rollup) may grow before another is taken, off the
 * event loop. smaps_rollup walks every page the process maps: read on the event loop, as each
 * memory decision read every host's, it held the front end ~48 ms a load on demand with 14 hosts
 * of 30 mnist models (bench/many-models.mjs under --cpu-prof: 2.5 s of 40 s in phase B, every
 * request waiting behind it). Between readings the PSS is the last reading plus what the
 * process's anonymous memory (RssAnon, a counter the kernel keeps: microseconds to read) grew
 * by since: a worker process is spawned, not forked, so each of its anonymous pages counts whole
 * in its PSS, and what a model's load or unload changes is anonymous (sessions, heaps).
 */
const PSS_REFRESH_MS = 5_000;
/**
 * How old a host's PSS reading may grow while its workers stay the same (no load, no unload since
 * the reading). Reading smaps_rollup costs the host 5-7 ms of CPU and holds its memory map's lock
 * for 25-33 ms, during which the batches of the models it serves wait (bench/results/20261207-0333-
 * many-models-busy3.txt); what serving changes is anonymous memory, which RssAnon follows between
 * readings, while the rest (mapped files, libraries) changes as models load and unload.
 */
export const PSS_STEADY_REFRESH_MS = 60_000;

/** Whether a PSS reading `ageMs` old is read again: sooner where the host's workers changed since it was taken. */
export function pssDue(ageMs: number, workersChangedSince: boolean): boolean {
  return ageMs > (workersChangedSince ? PSS_REFRESH_MS : PSS_STEADY_REFRESH_MS);
}
/**
 * How long a reading of RssAnon is reused: a memory decision asks every loaded model's worker,
 * and the budget looks each second. /proc's status took ~0.3 ms a read on a loaded machine;
 * reused for 100 ms, the 14 hosts of a 1,000-model run were read 1,800 times in 40 s (0.54 s of
 * the front end's event loop, 4 ms a load's decision). A load's own growth is read as it ends.
 */
const ANON_FRESH_MS = 1000;
/**
 * How far RssAnon may move while smaps_rollup is read for the reading to be kept. Asking for no
 * move at all kept none of a busy host's (its heap moves with every batch): the budget read it
 * from its first reading, taken while it was starting, and missed its pages since.
 */
const ANON_STEADY_BYTES = 2 * 2 ** 20;

export class WorkerHost {
  readonly shared: boolean;
  private readonly child: ChildProcess;
  private readonly opts: HostOptions;
  private readonly tenants = new Map<string, Tenant>();
  private exitedFlag = false;
  /** Why its process never started (its spawn failed), once that is known. */
  startError: string | undefined;
  /** Set when we ended the process; a SIGKILL nobody here sent came from the OS. */
  private killedByUs = false;
  /** Why we ended it, when that is what a running batch must answer (it sent more than any answer may be). */
  private killedFor: TsError | undefined;
  /** Loads in turn, so that each one's memory is what the process grew by while it ran. */
  private loads: Promise<unknown> = Promise.resolve();
  /** The last PSS reading, and RssAnon when it was taken (residentBytes). */
  private pss: { bytes: number; anon: number; at: number } | undefined;
  private pssReading = false;
  /** performance.now() when a worker last came, left or finished loading: a PSS reading older than it is out of date sooner (pssDue). */
  private workersChangedAt = performance.now();
  private anon: { bytes: number; at: number } | undefined;
  private readonly batches = { start: performance.now(), current: 0, previous: 0 };
  /** Called once the process has exited, after its tenants were told. */
  onExit: (() => void) | undefined;
  /** Called when its last worker left (shared-hosts.ts keeps it as the spare, or ends it). */
  onEmpty: (() => void) | undefined;

  constructor(opts: HostOptions) {
    this.opts = opts;
    this.shared = opts.shared;
    const child = startProcess(this.environment(), opts.permissionDir === undefined ? [] : permissionArgs(opts.permissionDir));
    this.child = child;
    yieldToFrontEnd(child.pid, opts.nice);
    this.pipeOutput(child);
    this.boundMessages(child);
    child.on('message', (msg: unknown) => this.onMessage(msg));
    child.on('exit', (code, signal) => this.onExited(code, signal));
    // A process that never started (its spawn failed: ENOENT, EACCES, EAGAIN, EMFILE) has no 'exit'
    // in Node, only this: it ends here, else its workers would wait for the exit that restarts them.
    // Any other error (a send to a process that ended) is followed by its 'exit'.
    child.on('error', (err) => {
      if (child.pid !== undefined || this.exitedFlag) return;
      this.startError = err.message;
      this.opts.onOutput(`The worker process could not be started: ${err.message}`, 'stderr');
      this.onExited(null, null);
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get exited(): boolean {
    return this.exitedFlag;
  }

  /** The channel is open: messages sent now reach the process. */
  get connected(): boolean {
    return this.child.connected;
  }

  /** Connected and not being ended by us: a worker may still move in. */
  get open(): boolean {
    return this.child.connected && !this.killedByUs;
  }

  /** How many workers it holds. */
  get size(): number {
    return this.tenants.size;
  }

  /** What its workers' loads added to it, as far as measured. */
  addedBytes(): number {
    let bytes = 0;
    for (const t of this.tenants.values()) bytes += t.loadBytes ?? 0;
    return bytes;
  }

  /** Batches sent to it over the last one to two BUSY_WINDOW_MS: how busy its models keep it. */
  recentBatches(): number {
    this.turnWindow();
    return this.batches.current + this.batches.previous;
  }

  private turnWindow(): void {
    const now = performance.now();
    const w = this.batches;
    if (now - w.start < BUSY_WINDOW_MS) return;
    w.previous = now - w.start < 2 * BUSY_WINDOW_MS ? w.current : 0;
    w.current = 0;
    w.start = now;
  }

  holds(model: string): boolean {
    for (const t of this.tenants.values()) if (t.model === model) return true;
    return false;
  }

  attach(key: string, tenant: Tenant): void {
    this.tenants.set(key, tenant);
    this.workersChangedAt = performance.now();
  }

  detach(key: string): void {
    if (!this.tenants.delete(key)) return;
    this.workersChangedAt = performance.now();
    if (this.tenants.size === 0) this.onEmpty?.();
  }

  send(msg: ToWorker): void {
    // A spawn that failed for want of descriptors (EMFILE) made no channel: its end answers for the message.
    if (!this.child.channel) return;
    if (msg.kind === 'predict') {
      this.turnWindow();
      this.batches.current++;
    }
    this.child.send(msg);
  }

  /** Ends the process; every worker in it answers what it held with "Worker died.". */
  kill(): void {
    this.killedByUs = true;
    this.child.kill('SIGKILL');
    endGroup(this.child.pid, 'SIGKILL');
  }

  /**
   * Runs `load` after the loads before it, and measures what the process grew by meanwhile:
   * the bytes (PSS) that model adds to the process; undefined where /proc cannot say.
   */
  measuredLoad(load: () => Promise<void>): Promise<number | undefined> {
    const turn = this.loads.then(async () => {
      const before = this.readAnon();
      await load();
      this.workersChangedAt = performance.now();
      const after = this.readAnon();
      return before === undefined || after === undefined ? undefined : Math.max(0, after - before);
    });
    this.loads = boundedTurn(turn);
    return turn;
  }

  /**
   * The process's PSS now: the last smaps_rollup reading plus its anonymous memory's growth since
   * (PSS_REFRESH_MS); undefined where /proc cannot say. Only a process's first reading is taken
   * here, on the event loop, while it is small; later ones in the background.
   */
  residentBytes(): number | undefined {
    const anon = this.anon && performance.now() - this.anon.at <= ANON_FRESH_MS ? this.anon.bytes : this.readAnon();
    if (anon === undefined) return undefined;
    if (!this.pss) {
      const bytes = this.alive ? procKilobytes(this.smapsRollup, 'Pss') : undefined;
      if (bytes === undefined) return undefined;
      this.pss = { bytes, anon, at: performance.now() };
    } else if (pssDue(performance.now() - this.pss.at, this.workersChangedAt >= this.pss.at)) this.refreshPss();
    return Math.max(0, this.pss.bytes + anon - this.pss.anon);
  }

  private get alive(): boolean {
    return this.pid > 0 && !this.exitedFlag;
  }

  private get smapsRollup(): string {
    return `/proc/${this.pid}/smaps_rollup`;
  }

  /** RssAnon now, remembered for ANON_FRESH_MS; undefined where /proc cannot say. */
  private readAnon(): number | undefined {
    const bytes = this.alive ? procKilobytes(`/proc/${this.pid}/status`, 'RssAnon') : undefined;
    this.anon = bytes === undefined ? undefined : { bytes, at: performance.now() };
    return bytes;
  }

  /**
   * A new PSS reading, read off the event loop, against RssAnon halfway through it. A busy
   * process's anonymous memory moves by a few pages between any two readings; one that moved
   * more than ANON_STEADY_BYTES while it was read (a load ran meanwhile) is dropped, and the next
   * look tries again.
   */
  private refreshPss(): void {
    if (this.pssReading) return;
    const before = this.readAnon();
    this.pssReading = true;
    void procKilobytesLater(this.smapsRollup, 'Pss').then((bytes) => {
      this.pssReading = false;
      const after = this.readAnon();
      if (bytes === undefined || before === undefined || after === undefined || Math.abs(after - before) > ANON_STEADY_BYTES) return;
      this.pss = { bytes, anon: (before + after) / 2, at: performance.now() };
    });
  }

  /**
   * The process's environment: the server's (workerEnvironment), with malloc's setting, its
   * onnxruntime thread budget and onnxruntime's telemetry off, whatever the server's environment
   * says (a model server sends nothing anywhere; docs/deploy.md, "No telemetry").
   */
  private environment(): NodeJS.ProcessEnv {
    const { env, intraOpThreads, wideIntraOpThreads, shared } = this.opts;
    const wide = wideIntraOpThreads === undefined ? {} : { [WIDE_INTRA_OP_THREADS_ENV]: String(wideIntraOpThreads) };
    const sharing = shared ? { [SHARED_HOST_ENV]: '1' } : {};
    return { ...mallocReturningMemory(env), [INTRA_OP_THREADS_ENV]: String(intraOpThreads), ...wide, ...sharing, ...ORT_TELEMETRY_OFF };
  }

  private onMessage(raw: unknown): void {
    const msg = fromWorker(raw);
    if (!msg) {
      // Only a handler writing to the channel itself sends one: what the process held gets "Worker died.".
      this.opts.onOutput('The worker sent a message that is not of the worker protocol; it is stopped', 'stderr');
      this.kill();
      return;
    }
    this.tenants.get(msg.key)?.onMessage(msg);
  }

  private onExited(code: number | null, signal: NodeJS.Signals | null): void {
    this.exitedFlag = true;
    // However it ended (killed from outside, out of memory, a handler's exit), its handler's processes end too.
    endGroup(this.child.pid, 'SIGKILL');
    const error = this.killedFor ?? exitError(code, signal === 'SIGKILL' && !this.killedByUs);
    const tenants = [...this.tenants.values()];
    this.tenants.clear();
    for (const tenant of tenants) tenant.onHostExit(code, signal, error);
    this.onExit?.();
  }

  private pipeOutput(child: ChildProcess): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const source = child[stream];
      if (source) readLines(source, (line) => this.opts.onOutput(line, stream));
    }
  }

  /**
   * A message larger than any batch of answers of its workers may be (a handler's own
   * process.send) is not read: the process is ended as its first bytes arrive, and the batches it
   * ran answer that their response was too large.
   */
  private boundMessages(child: ChildProcess): void {
    const watched = watchMessageSize(
      child,
      () => this.messageBound(),
      (bytes, bound) => {
        this.opts.onOutput(`Worker sent a message of ${bytes} bytes, over the ${bound} any batch of answers may take: ending it`, 'stderr');
        this.killedFor = responseTooLarge(this.opts.maxResponseSize);
        child.disconnect();
        this.kill();
      },
    );
    if (!watched) warnUnboundedMessages();
  }

  /** The largest of its workers' bounds; with none, one answer's. */
  private messageBound(): number {
    let bound = messageBound({ largestBatch: 1, maxResponseSize: this.opts.maxResponseSize });
    for (const t of this.tenants.values()) bound = Math.max(bound, t.messageBound);
    return bound;
  }
}

/** Settles when `turn` does, or after LOAD_TURN_MS, whichever is first; never rejects. */
function boundedTurn(turn: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, LOAD_TURN_MS);
    timer.unref();
    const settled = (): void => {
      clearTimeout(timer);
      resolve();
    };
    turn.then(settled, settled);
  });
}

let unboundedWarned = false;

/** Said once: this Node's IPC could not be bounded as it is read, only each message once it has arrived. */
function warnUnboundedMessages(): void {
  if (unboundedWarned) return;
  unboundedWarned = true;
  process.emitWarning("Worker messages are checked against max_response_size only once read whole: this Node's IPC channel has no size to watch");
}

/**
 * TorchServe answers 507 when the worker was killed for memory (exit status 137: a SIGKILL we did
 * not send, which on Linux is the OOM killer), else 500.
 */
function exitError(code: number | null, killedByOs: boolean): TsError {
  const err = tsError('TSS_ERR_WORKER_DIED');
  return code === 137 || killedByOs ? errorFromWire('TSS_ERR_WORKER_DIED', err.message, 507) : err;
}

/**
 * @module workers/shared-hosts
 * The worker processes that several small models share (issue 33: 24.7 MB PSS for an mnist
 * worker of its own, about 1.3 MB for one more model in a running process). A shared worker goes
 * to the running host that has room (shared_worker_models) and no worker of its model yet (a
 * model's workers in one process would share its one thread, and its crash), the one sent the
 * fewest batches over the last second or two, then with the fewest workers: a model loading
 * there holds the host's one thread while its handler and session open, which the busy models'
 * batches would wait for, and a model's first request waits for its load behind their batches.
 * A host sent BUSY_HOST_BATCHES lately serves busy models and takes no load at all: one landed in
 * a busy model's host for a fifth of the loads of bench/many-models.mjs (its models' hosts were the
 * ones with room), each holding their batches for a session's creation; the spare takes it
 * instead, and another spare starts. Until there are as many hosts as cores, each new worker takes the spare, so
 * that the first models, often the busiest, do not all share one thread. When none has room, to the spare: a host started ahead, with node and onnxruntime loaded
 * and no model, so that a model loading on demand waits for a session, not for a process's start.
 * Taking the spare starts the next one. A host whose last worker left becomes the spare, or, if
 * there is one, is kept for the next load while no more hosts than cores run (an emptied host
 * takes a load before any other), else ends. A host's death ends every worker in it (worker-host.ts): each answers what it
 * held and its pool restarts it after its backoff, in a host found here again.
 */
import { WorkerHost, type HostOptions } from './worker-host.js';
import type { HostSource } from './worker-process.js';

export interface SharedHostsOptions extends Omit<HostOptions, 'shared' | 'onOutput' | 'permissionDir' | 'wideIntraOpThreads'> {
  /** The most workers one host holds (shared_worker_models). */
  readonly modelsPerHost: number;
  /**
   * Hosts to spread workers over before any is filled: the cores. A host runs its models on one
   * thread, so models in one host never run at once; with fewer hosts than cores, the busiest
   * models all landed in the first host and served a quarter of what they did in processes of
   * their own (bench/many-models.mjs).
   */
  readonly spreadOver: number;
  /** Each line a host prints, with the host's name. */
  readonly onOutput: (host: string, line: string, stream: 'stdout' | 'stderr') => void;
  /** A host started or ended: for the server log. */
  readonly log: (message: string) => void;
  /** Starts a host process; a test's own stands in for it where none is wanted. */
  readonly startHost?: (opts: HostOptions) => WorkerHost;
}

/**
 * Batches sent to a host over the last one to two seconds (recentBatches) from which it serves
 * busy models and takes no load: 5-10 a second. A host of models only loaded on demand was sent
 * a few a second in bench/many-models.mjs; one of its ten busiest models' hundreds on an idle
 * machine, but 20-40 a second on one swamped by other jobs, where a mark of 50 let 12 of 44 loads
 * into their hosts. Where every host is that busy, loads start hosts of their own, which hold
 * fewer models each (node and onnxruntime, ~25 MB a host, counted in the memory budget).
 */
export const BUSY_HOST_BATCHES = 10;

export class SharedHosts implements HostSource {
  private readonly opts: SharedHostsOptions;
  private readonly hosts = new Set<WorkerHost>();
  private spare: WorkerHost | undefined;
  private nextId = 1;
  private closed = false;

  constructor(opts: SharedHostsOptions) {
    this.opts = opts;
  }

  /** Running hosts, the spare included. */
  get size(): number {
    return this.hosts.size;
  }

  hostFor(model: string): WorkerHost {
    const host = this.emptyHost() ?? (this.running() < this.opts.spreadOver ? undefined : this.leastFull(model)) ?? this.takeSpare();
    // After this worker's load is sent: the next spare's start does not delay it.
    if (!this.closed) setImmediate(() => this.keepSpare());
    return host;
  }

  /** Hosts with workers, the spare not counted. */
  private running(): number {
    let n = 0;
    for (const host of this.hosts) if (host !== this.spare && host.open) n++;
    return n;
  }

  /** A running host whose workers all left (kept by emptied): a load there needs no start, and shares with none. */
  private emptyHost(): WorkerHost | undefined {
    for (const host of this.hosts) if (host !== this.spare && host.open && host.size === 0) return host;
    return undefined;
  }

  /**
   * The running host with room, no worker of `model` and no busy models (BUSY_HOST_BATCHES) sent
   * the fewest batches lately, then with the fewest workers.
   */
  private leastFull(model: string): WorkerHost | undefined {
    let best: { host: WorkerHost; batches: number } | undefined;
    for (const host of this.hosts) {
      if (host === this.spare || !host.open || host.size >= this.opts.modelsPerHost || host.holds(model)) continue;
      const batches = host.recentBatches();
      if (batches >= BUSY_HOST_BATCHES) continue;
      if (!best || batches < best.batches || (batches === best.batches && host.size < best.host.size)) best = { host, batches };
    }
    return best?.host;
  }

  private takeSpare(): WorkerHost {
    const host = this.spare?.open ? this.spare : this.startHost();
    this.spare = undefined;
    return host;
  }

  /** A spare host running, once any model shares. */
  private keepSpare(): void {
    if (this.closed || this.spare?.open) return;
    this.spare = this.startHost();
  }

  private startHost(): WorkerHost {
    const name = `H-${this.nextId++}`;
    const start = this.opts.startHost ?? ((opts: HostOptions) => new WorkerHost(opts));
    const host = start({
      ...this.opts,
      wideIntraOpThreads: undefined,
      permissionDir: undefined,
      shared: true,
      onOutput: (line, stream) => this.opts.onOutput(name, line, stream),
    });
    this.hosts.add(host);
    host.onExit = () => {
      this.hosts.delete(host);
      if (this.spare === host) this.spare = undefined;
      if (!this.closed) this.opts.log(`Shared worker host ${name} (pid ${host.pid}) ended`);
    };
    host.onEmpty = () => this.emptied(host);
    this.opts.log(`Shared worker host ${name} started (pid ${host.pid})`);
    return host;
  }

  /**
   * A host's last worker left: it is the spare, unless there is one; else it is kept for the next
   * load while no more hosts than cores run. Ending it meant starting another for the next load:
   * models loaded and unloaded in turn (max_loaded_models) started a process for each load.
   */
  private emptied(host: WorkerHost): void {
    if (host === this.spare || !host.open) return;
    if (!this.closed && !this.spare?.open) {
      this.spare = host;
      return;
    }
    if (!this.closed && this.running() <= this.opts.spreadOver) return;
    // Out of the choice at once: until its exit is read it looks alive, and a worker sent there would die with it.
    this.hosts.delete(host);
    host.kill();
  }

  /** The PSS of the hosts that hold no model, the spare and emptied ones kept (no model's, for the memory budget); 0 where /proc cannot say. */
  spareBytes(): number {
    let bytes = 0;
    for (const host of this.hosts) if (host.open && host.size === 0) bytes += host.residentBytes() ?? 0;
    return bytes;
  }

  /** Ends every host (the server stops; their workers were stopped first). */
  close(): void {
    this.closed = true;
    for (const host of this.hosts) host.kill();
    this.hosts.clear();
  }
}

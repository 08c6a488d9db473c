/**
 * @module workers/shared-hosts
 * The worker processes that several small models share (issue 33: 24.7 MB PSS for an mnist
 * worker of its own, about 1.3 MB for one more model in a running process). A shared worker goes
 * to the running host with the fewest workers that has room (shared_worker_models) and no worker
 * of its model yet (a model's workers in one process would share its one thread, and its
 * crash); when none has, to the spare: a host started ahead, with node and onnxruntime loaded
 * and no model, so that a model loading on demand waits for a session, not for a process's start.
 * Taking the spare starts the next one. A host whose last worker left becomes the spare, or ends
 * if there is one. A host's death ends every worker in it (worker-host.ts): each answers what it
 * held and its pool restarts it after its backoff, in a host found here again.
 */
import { WorkerHost, type HostOptions } from './worker-host.js';
import type { HostSource } from './worker-process.js';

export interface SharedHostsOptions extends Omit<HostOptions, 'shared' | 'onOutput' | 'permissionDir' | 'wideIntraOpThreads'> {
  /** The most workers one host holds (shared_worker_models). */
  readonly modelsPerHost: number;
  /** Each line a host prints, with the host's name. */
  readonly onOutput: (host: string, line: string, stream: 'stdout' | 'stderr') => void;
  /** A host started or ended: for the server log. */
  readonly log: (message: string) => void;
  /** Starts a host process; a test's own stands in for it where none is wanted. */
  readonly startHost?: (opts: HostOptions) => WorkerHost;
}

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
    const host = this.leastFull(model) ?? this.takeSpare();
    // After this worker's load is sent: the next spare's start does not delay it.
    if (!this.closed) setImmediate(() => this.keepSpare());
    return host;
  }

  /** The running host with room and no worker of `model` that holds the fewest workers. */
  private leastFull(model: string): WorkerHost | undefined {
    let best: WorkerHost | undefined;
    for (const host of this.hosts) {
      if (host === this.spare || host.exited || host.size >= this.opts.modelsPerHost || host.holds(model)) continue;
      if (!best || host.size < best.size) best = host;
    }
    return best;
  }

  private takeSpare(): WorkerHost {
    const host = this.spare && !this.spare.exited ? this.spare : this.startHost();
    this.spare = undefined;
    return host;
  }

  /** A spare host running, once any model shares. */
  private keepSpare(): void {
    if (this.closed || (this.spare && !this.spare.exited)) return;
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

  /** A host's last worker left: it is the spare, unless there is one. */
  private emptied(host: WorkerHost): void {
    if (host === this.spare || host.exited) return;
    if (!this.closed && (!this.spare || this.spare.exited)) {
      this.spare = host;
      return;
    }
    host.kill();
  }

  /** Ends every host (the server stops; their workers were stopped first). */
  close(): void {
    this.closed = true;
    for (const host of this.hosts) host.kill();
  }
}

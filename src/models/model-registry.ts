/**
 * @module models/model-registry
 * Model name -> versions -> Model, and which version is the default. Only bookkeeping: starting
 * and stopping workers is the caller's (models/model-service.ts).
 *
 * Beside them, the versions a config snapshot named that could not be restored (a missing or junk
 * archive, a full disk): TorchServe keeps such a model registered, so they are listed, described
 * as FAILED, answered with a 503 that says why, and kept in the snapshots written from now on,
 * until the version is registered again or unregistered.
 */
import type { SnapshotModel } from '../config/snapshot-file.js';
import { quotedName, tsError } from '../errors.js';
import type { Model } from './model.js';

/** A version a snapshot named that could not be restored, with its snapshot entry and why. */
export interface FailedRestore {
  readonly name: string;
  readonly version: string;
  readonly entry: SnapshotModel;
  readonly reason: string;
}

interface Entry {
  readonly versions: Map<string, Model>;
  defaultVersion: string;
}

export class ModelRegistry {
  private readonly models = new Map<string, Entry>();
  private readonly failed = new Map<string, Map<string, FailedRestore>>();

  /** Adds a version; the first version of a name becomes its default. A failed restore of it is over. */
  add(model: Model): void {
    const entry = this.models.get(model.name);
    if (!entry?.versions.has(model.version)) this.forgetFailed(model.name, model.version);
    if (!entry) {
      this.models.set(model.name, { versions: new Map([[model.version, model]]), defaultVersion: model.version });
      return;
    }
    if (entry.versions.has(model.version)) throw tsError('TSS_ERR_MODEL_VERSION_EXISTS', model.version, model.name);
    entry.versions.set(model.version, model);
  }

  /** The named version, or the default one; throws TorchServe's 404s, and a failed restore's 503. */
  get(name: string, version?: string): Model {
    const model = this.find(name, version);
    if (model) return model;
    const failed = this.failedRestore(name, version);
    if (failed) throw tsError('TSS_ERR_MODEL_RESTORE_FAILED', failed.name, failed.version, failed.reason);
    if (!this.models.has(name)) throw tsError('TSS_ERR_MODEL_NOT_FOUND', quotedName(name));
    throw tsError('TSS_ERR_MODEL_VERSION_NOT_FOUND', quotedName(version ?? ''), quotedName(name));
  }

  /** Keeps a version a snapshot named that could not be restored. */
  addFailed(failed: FailedRestore): void {
    let versions = this.failed.get(failed.name);
    if (!versions) this.failed.set(failed.name, (versions = new Map()));
    versions.set(failed.version, failed);
  }

  /** The named failed version; without a version, the name's default one, else its first. */
  failedRestore(name: string, version?: string): FailedRestore | undefined {
    const versions = this.failed.get(name);
    if (!versions) return undefined;
    if (version !== undefined) return versions.get(version);
    const all = [...versions.values()];
    return all.find((f) => f.entry.defaultVersion) ?? all[0];
  }

  failedRestores(): FailedRestore[] {
    return [...this.failed.values()].flatMap((versions) => [...versions.values()]);
  }

  /** Forgets a failed version (or all of a name's): unregistered, or registered again. Answers whether there was one. */
  forgetFailed(name: string, version?: string): boolean {
    const versions = this.failed.get(name);
    if (!versions || (version !== undefined && !versions.has(version))) return false;
    if (version === undefined) this.failed.delete(name);
    else versions.delete(version);
    if (versions.size === 0) this.failed.delete(name);
    return true;
  }

  /** The named version, or the default one; undefined where get would throw. */
  find(name: string, version?: string): Model | undefined {
    const entry = this.models.get(name);
    return entry?.versions.get(version ?? entry.defaultVersion);
  }

  has(name: string): boolean {
    return this.models.has(name);
  }

  versions(name: string): Model[] {
    const entry = this.models.get(name);
    if (!entry) throw tsError('TSS_ERR_MODEL_NOT_FOUND', quotedName(name));
    return [...entry.versions.values()];
  }

  isDefault(model: Model): boolean {
    return this.models.get(model.name)?.defaultVersion === model.version;
  }

  /**
   * Takes a version out of the registry. The default version may only go when it is the last
   * one (TorchServe answers 403 otherwise).
   */
  remove(name: string, version?: string): Model {
    const model = this.get(name, version);
    const entry = this.models.get(name)!;
    if (entry.defaultVersion === model.version && entry.versions.size > 1) throw tsError('TSS_ERR_MODEL_REMOVE_DEFAULT', name);
    entry.versions.delete(model.version);
    if (entry.versions.size === 0) this.models.delete(name);
    return model;
  }

  /**
   * Takes out `model` itself, if it is still registered: a registration that failed undoes only
   * what it did, never a newer registration of the same name and version made since. Had it
   * become the default (it was the first), the oldest version left becomes the default.
   */
  removeExactly(model: Model): boolean {
    const entry = this.models.get(model.name);
    if (entry?.versions.get(model.version) !== model) return false;
    entry.versions.delete(model.version);
    const [oldest] = entry.versions.keys();
    if (oldest === undefined) this.models.delete(model.name);
    else if (entry.defaultVersion === model.version) entry.defaultVersion = oldest;
    return true;
  }

  setDefault(name: string, version: string): void {
    const entry = this.models.get(name);
    if (!entry) throw tsError('TSS_ERR_MODEL_NOT_FOUND', quotedName(name));
    if (!entry.versions.has(version)) throw tsError('TSS_ERR_MODEL_DEFAULT_VERSION_NOT_FOUND', quotedName(version), name);
    entry.defaultVersion = version;
  }

  /**
   * Start-up is not over: the start-up models load, then the front end warms itself up
   * (http/warm-up.ts). Until then the readiness probes say not ready, as `tsserve --start` has not
   * returned: a load balancer that sent its load on the first ready met a front end whose code was
   * still cold, and part of the load was refused. /ping is not held: it is TorchServe's health,
   * which counts a loading worker, and the liveness probe of deploy/'s manifests.
   */
  startingUp = false;

  /** /ping's answer: every model's default version has at least its minimum of healthy workers. */
  healthy(): boolean {
    return this.defaults().every((m) => m.ready);
  }

  /**
   * Readiness probes' answer: start-up is over, and every default version that asks for workers
   * can answer now (Model.serving); one scaled to zero on purpose does not hold the server back.
   */
  serving(): boolean {
    return !this.startingUp && this.defaults().every((m) => m.settings.minWorkers === 0 || m.serving);
  }

  /** Default versions, sorted by name. */
  defaults(): Model[] {
    return [...this.models.keys()].sort().map((name) => this.get(name));
  }

  all(): Model[] {
    // Loops, not flatMap over spread copies: every load on demand walks all of them up to three
    // times (models/model-memory.ts), a thousand models at 12-16 µs a walk against 39-49.
    const out: Model[] = [];
    for (const entry of this.models.values()) for (const model of entry.versions.values()) out.push(model);
    return out;
  }
}

/**
 * @module snapshot/snapshot
 * Config snapshots as TorchServe writes them (spec §9): after start-up, after every change of the
 * registered models or their workers, and at shutdown, a Java properties file in
 * LOG_LOCATION/config holding every configuration property plus `model_snapshot`, the JSON of
 * what is registered. The newest one is the configuration of the next start unless --ncs, so a
 * restart, or a crash, loses no model, version or scale setting.
 *
 * Unlike TorchServe, which keeps every file (each holds every model: 2,000 registrations made
 * 4,001 files and 1.3 GB), only the newest `config_snapshot_max_files` stay. A change's snapshot
 * is written in the background, so the event loop (and /ping) never waits on the disk, and
 * changes that arrive while one is being written share the next one: a burst makes a few files,
 * not one each. Models a start could not restore (a missing archive, a full disk), which the
 * registry keeps as failed, stay in every snapshot until they are registered again or
 * unregistered, so the next start tries them again.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { unsetBatchKeys, workerAndBatchSettings } from '../config/model-config.js';
import { formatProperties } from '../config/properties.js';
import { snapshotFileName, snapshotFiles, snapshotTemps, type ModelSnapshot, type SnapshotKind } from '../config/snapshot-file.js';
import { tsError } from '../errors.js';
import type { ModelRegistry } from '../models/model-registry.js';
import { formatLocalTime } from '../local-time.js';
import { replaceFile, replaceFileSync } from '../replace-file.js';

/** How long a snapshot that could not be written waits before it is tried again. */
const RETRY_MS = 5000;

export interface SnapshotWriterOptions {
  /** Snapshot files kept; the oldest beyond this are removed. */
  readonly keep: number;
  readonly log: { error(message: string): void; info(message: string): void };
}

export class SnapshotWriter {
  private readonly dir: string;
  private readonly properties: ReadonlyMap<string, string>;
  private readonly registry: ModelRegistry;
  private readonly options: SnapshotWriterOptions;
  /** The write under way, and the one every change since it began shares. */
  private current: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  /** The time of the newest name given, so two writes in one millisecond never share a name. */
  private lastTime = 0;
  /** Set by a failed write until one succeeds: what is in effect is not on disk. */
  private unsaved = false;
  private retry: NodeJS.Timeout | undefined;
  /** The shutdown snapshot is the last: nothing is written after it. */
  private stopped = false;

  constructor(dir: string, properties: ReadonlyMap<string, string>, registry: ModelRegistry, options: SnapshotWriterOptions) {
    this.dir = dir;
    this.properties = properties;
    this.registry = registry;
    this.options = options;
  }

  /**
   * Schedules a snapshot of the registry as it is when the write begins; resolves once it is on
   * disk, rejects with the disk's error (ENOSPC, EROFS) if it could not be written.
   */
  save(): Promise<void> {
    if (this.next) return this.next;
    if (!this.current) {
      this.current = this.writeInBackground().finally(() => {
        this.current = undefined;
      });
      return this.current;
    }
    this.next = this.current
      .catch(() => {})
      .then(() => {
        this.next = undefined;
        return this.save();
      });
    return this.next;
  }

  /**
   * A change's snapshot (a model service event): as save, but a write the disk did not take is the
   * change's 507, which says the change is in effect all the same.
   */
  saveChange(): Promise<void> {
    return this.save().catch((err: Error) => {
      throw tsError('TSS_ERR_SNAPSHOT_NOT_SAVED', err.message);
    });
  }

  /** Writes a snapshot now, synchronously (start-up, and shutdown, after which none is written), and answers its path. */
  writeNow(kind: Exclude<SnapshotKind, 'snapshot'>, now = new Date()): string {
    if (kind === 'shutdown') {
      this.stopped = true;
      clearTimeout(this.retry);
    }
    mkdirSync(this.dir, { recursive: true });
    if (kind === 'startup') for (const temp of snapshotTemps(this.dir)) rmSync(join(this.dir, temp), { force: true });
    const { name, text } = this.render(kind, now);
    const path = join(this.dir, name);
    // Replaced whole, so a crash mid-write never leaves a half snapshot as the newest.
    replaceFileSync(path, text);
    for (const old of this.beyondKept()) rmSync(join(this.dir, old), { force: true });
    return path;
  }

  private async writeInBackground(): Promise<void> {
    if (this.stopped) return;
    try {
      await mkdir(this.dir, { recursive: true });
      const { name, text } = this.render('snapshot', new Date());
      const path = join(this.dir, name);
      await replaceFile(path, text);
    } catch (err) {
      this.failed(err as Error);
      throw err;
    }
    if (this.unsaved) this.options.log.info('Config snapshot written again: every change is saved');
    this.unsaved = false;
    await Promise.all(this.beyondKept().map((old) => rm(join(this.dir, old), { force: true }))).catch(() => {});
  }

  /** Said once per run of failures; tried again until the disk takes it or the server stops. */
  private failed(err: Error): void {
    if (!this.unsaved) {
      this.options.log.error(
        `Could not write a config snapshot: ${err.message}. The changes are in effect but a restart would not have them; retrying every ${RETRY_MS / 1000} s`,
      );
    }
    this.unsaved = true;
    clearTimeout(this.retry);
    if (this.stopped) return;
    this.retry = setTimeout(() => void this.save().catch(() => {}), RETRY_MS);
    this.retry.unref();
  }

  private render(kind: SnapshotKind, now: Date): { name: string; text: string } {
    const name = this.freeName(now, kind);
    const snapshot: ModelSnapshot = { name, modelCount: 0, created: now.getTime(), models: {} };
    for (const model of this.registry.all()) {
      const unset = unsetBatchKeys(model.settings);
      (snapshot.models[model.name] ??= {})[model.version] = {
        defaultVersion: this.registry.isDefault(model),
        marName: model.spec.marName,
        ...workerAndBatchSettings(model.settings),
        runtimeType: model.spec.runtime,
        ...(unset.length > 0 ? { unset } : {}),
      };
    }
    // Kept for the next start to try again (models/model-registry.ts: FailedRestore).
    for (const failed of this.registry.failedRestores()) (snapshot.models[failed.name] ??= {})[failed.version] ??= failed.entry;
    snapshot.modelCount = Object.values(snapshot.models).reduce((n, versions) => n + Object.keys(versions).length, 0);
    const entries = [...this.properties].filter(([k]) => k !== 'model_snapshot' && k !== 'load_models');
    entries.push(['model_snapshot', JSON.stringify(snapshot, null, 2)]);
    return { name, text: formatProperties(entries, ['Saving snapshot', now.toString()]) };
  }

  /** The snapshot files past the newest `keep`. */
  private beyondKept(): string[] {
    const names = snapshotFiles(this.dir);
    return names.slice(0, Math.max(0, names.length - this.options.keep));
  }

  /** `<yyyyMMddHHmmssSSS>-<kind>.cfg`, one millisecond later while that name is taken. */
  private freeName(now: Date, kind: SnapshotKind): string {
    for (let t = Math.max(now.getTime(), this.lastTime + 1); ; t++) {
      const name = snapshotFileName(formatLocalTime(new Date(t), 'yyyyMMddHHmmssSSS'), kind);
      if (!existsSync(join(this.dir, name))) {
        this.lastTime = t;
        return name;
      }
    }
  }
}

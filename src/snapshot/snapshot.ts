/**
 * @module snapshot/snapshot
 * Config snapshots as TorchServe writes them (spec §9): after start-up, after every change of the
 * registered models or their workers, and at shutdown, a Java properties file in
 * LOG_LOCATION/config holding every configuration property plus `model_snapshot`, the JSON of
 * what is registered. The newest one is the configuration of the next start unless --ncs, so a
 * restart, or a crash, loses no model, version or scale setting.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatProperties } from '../config/properties.js';
import type { ModelRegistry } from '../wlm/model-registry.js';

export interface SnapshotModel {
  defaultVersion: boolean;
  marName: string;
  minWorkers: number;
  maxWorkers: number;
  batchSize: number;
  maxBatchDelay: number;
  responseTimeout: number;
  startupTimeout: number;
  runtimeType: string;
}

export interface ModelSnapshot {
  name: string;
  modelCount: number;
  created: number;
  models: Record<string, Record<string, SnapshotModel>>;
}

export type SnapshotKind = 'startup' | 'snapshot' | 'shutdown';

const SNAPSHOT_FILE = /^(\d{17})-(startup|snapshot|shutdown)\.cfg$/;

export function snapshotDir(logLocation: string): string {
  return join(logLocation, 'config');
}

/** The newest snapshot file by its timestamp prefix, if any. */
export function newestSnapshot(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const names = readdirSync(dir).filter((n) => SNAPSHOT_FILE.test(n)).sort();
  return names.length > 0 ? join(dir, names[names.length - 1]!) : undefined;
}

export class SnapshotWriter {
  private readonly dir: string;
  private readonly properties: ReadonlyMap<string, string>;
  private readonly registry: ModelRegistry;

  constructor(dir: string, properties: ReadonlyMap<string, string>, registry: ModelRegistry) {
    this.dir = dir;
    this.properties = properties;
    this.registry = registry;
  }

  /** Writes one snapshot file and returns its path. */
  write(kind: SnapshotKind, now = new Date()): string {
    mkdirSync(this.dir, { recursive: true });
    const name = this.freeName(now, kind);
    const snapshot: ModelSnapshot = { name, modelCount: 0, created: now.getTime(), models: {} };
    for (const model of this.registry.all()) {
      const s = model.settings;
      (snapshot.models[model.name] ??= {})[model.version] = {
        defaultVersion: this.registry.isDefault(model),
        marName: model.spec.marName,
        minWorkers: s.minWorkers,
        maxWorkers: s.maxWorkers,
        batchSize: s.batchSize,
        maxBatchDelay: s.maxBatchDelay,
        responseTimeout: s.responseTimeout,
        startupTimeout: s.startupTimeout,
        runtimeType: model.spec.runtime,
      };
      snapshot.modelCount++;
    }
    const entries = [...this.properties].filter(([k]) => k !== 'model_snapshot' && k !== 'load_models');
    entries.push(['model_snapshot', JSON.stringify(snapshot, null, 2)]);
    const path = join(this.dir, name);
    // Written beside and renamed, so a crash mid-write never leaves a half snapshot as the newest.
    writeFileSync(`${path}.tmp`, formatProperties(entries, ['Saving snapshot', now.toString()]));
    renameSync(`${path}.tmp`, path);
    return path;
  }

  /** `<yyyyMMddHHmmssSSS>-<kind>.cfg`, one millisecond later while that name is taken. */
  private freeName(now: Date, kind: SnapshotKind): string {
    for (let t = now.getTime(); ; t++) {
      const name = `${timestamp(new Date(t))}-${kind}.cfg`;
      if (!existsSync(join(this.dir, name))) return name;
    }
  }
}

function timestamp(d: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}${p(d.getMilliseconds(), 3)}`;
}

export function parseModelSnapshot(value: string): ModelSnapshot {
  const parsed = JSON.parse(value) as Partial<ModelSnapshot>;
  return { name: parsed.name ?? '', modelCount: parsed.modelCount ?? 0, created: parsed.created ?? 0, models: parsed.models ?? {} };
}

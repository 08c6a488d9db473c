/**
 * @module snapshot/snapshot
 * Config snapshots as TorchServe writes them (spec §9): after start-up, after every change of the
 * registered models or their workers, and at shutdown, a Java properties file in
 * LOG_LOCATION/config holding every configuration property plus `model_snapshot`, the JSON of
 * what is registered. The newest one is the configuration of the next start unless --ncs, so a
 * restart, or a crash, loses no model, version or scale setting.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { workerAndBatchSettings } from '../config/model-config.js';
import { formatProperties } from '../config/properties.js';
import { snapshotFileName, type ModelSnapshot, type SnapshotKind } from '../config/snapshot-file.js';
import type { ModelRegistry } from '../wlm/model-registry.js';
import { formatLocalTime } from '../local-time.js';

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
      (snapshot.models[model.name] ??= {})[model.version] = {
        defaultVersion: this.registry.isDefault(model),
        marName: model.spec.marName,
        ...workerAndBatchSettings(model.settings),
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
      const name = snapshotFileName(formatLocalTime(new Date(t), 'yyyyMMddHHmmssSSS'), kind);
      if (!existsSync(join(this.dir, name))) return name;
    }
  }
}

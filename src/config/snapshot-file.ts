/**
 * @module config/snapshot-file
 * What a config snapshot file is, for the configuration that starts from one: where snapshots
 * live (LOG_LOCATION/config), how they are named (`<yyyyMMddHHmmssSSS>-<kind>.cfg`), which is
 * the newest, and the shape of its `model_snapshot`. Writing them is snapshot/snapshot.ts's job.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** The settings TorchServe's describe answer and its config snapshots both carry. */
export interface WorkerAndBatchSettings {
  minWorkers: number;
  maxWorkers: number;
  batchSize: number;
  maxBatchDelay: number;
  responseTimeout: number;
  startupTimeout: number;
}

/** A batch key a model may leave unset: TorchServe's batch_size and max_batch_delay. */
export type BatchKey = 'batchSize' | 'maxBatchDelay';

export interface SnapshotModel extends WorkerAndBatchSettings {
  defaultVersion: boolean;
  marName: string;
  runtimeType: string;
  /**
   * tsserve's own: the batch keys the model did not set, whose defaults the entry carries only
   * because TorchServe's shape has them. A restore leaves them unset: read as set, they turned a
   * model that batched adaptively (no batch_size) into batches of 1 after a restart.
   */
  unset?: BatchKey[];
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

/** A snapshot's file name: its local time stamp (yyyyMMddHHmmssSSS) and kind. */
export function snapshotFileName(stamp: string, kind: SnapshotKind): string {
  return `${stamp}-${kind}.cfg`;
}

/** The snapshot files' names in `dir`, oldest first (by their timestamp prefix). */
export function snapshotFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => SNAPSHOT_FILE.test(n))
    .sort();
}

/** The newest snapshot file by its timestamp prefix, if any. */
export function newestSnapshot(dir: string): string | undefined {
  const names = snapshotFiles(dir);
  return names.length > 0 ? join(dir, names[names.length - 1]!) : undefined;
}

/** Temp files of snapshot writes a crash interrupted. */
export function snapshotTemps(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => /\.cfg(\.\d+-[0-9a-f]+)?\.tmp$/.test(n));
}

export function parseModelSnapshot(value: string): ModelSnapshot {
  const parsed = JSON.parse(value) as Partial<ModelSnapshot>;
  return { name: parsed.name ?? '', modelCount: parsed.modelCount ?? 0, created: parsed.created ?? 0, models: parsed.models ?? {} };
}

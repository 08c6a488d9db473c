// Config snapshot files as the fault tests read and write them: one version's entry, and the
// model_snapshot of the newest file in a snapshot folder.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseProperties } from '../../dist/src/config/properties.js';

/** A model_snapshot entry: version 1.0 of `marName`, the default, with no workers. */
export function snapshotEntry(marName: string): Record<string, object> {
  return {
    '1.0': {
      defaultVersion: true,
      marName,
      minWorkers: 0,
      maxWorkers: 0,
      batchSize: 1,
      maxBatchDelay: 100,
      responseTimeout: 120,
      startupTimeout: 120,
      runtimeType: 'python',
    },
  };
}

/** The snapshot files in `configDir`, oldest first. */
export function snapshotNames(configDir: string): string[] {
  return readdirSync(configDir)
    .filter((f) => f.endsWith('.cfg'))
    .sort();
}

/** The models (name -> version -> settings) of the newest snapshot in `configDir`. */
export function newestModels(configDir: string): Record<string, Record<string, { minWorkers: number; marName: string }>> {
  const names = snapshotNames(configDir);
  const text = readFileSync(join(configDir, names[names.length - 1]!), 'utf8');
  return (JSON.parse(parseProperties(text, {}).get('model_snapshot')!) as { models: ReturnType<typeof newestModels> }).models;
}

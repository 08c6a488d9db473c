/**
 * @module archive/inside
 * The one test of "this name stays inside the model directory", for archive entries and for the
 * paths a manifest names: relative, and still inside once `..` is resolved.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, normalize, resolve, sep } from 'node:path';

/** `name` resolved inside `dir`, or undefined when it is absolute or climbs out. */
export function resolveInside(dir: string, name: string): string | undefined {
  const cleaned = name.replace(/\\/g, '/');
  if (isAbsolute(cleaned) || /^[a-zA-Z]:/.test(cleaned)) return undefined;
  const target = resolve(dir, normalize(cleaned));
  return target === dir || target.startsWith(dir + sep) ? target : undefined;
}

/** `name` resolved inside `dir` where something is there (a model-config.yaml's warmupFile); or undefined. */
export function existingInside(dir: string, name: string): string | undefined {
  const path = resolveInside(dir, name);
  return path !== undefined && existsSync(path) ? path : undefined;
}

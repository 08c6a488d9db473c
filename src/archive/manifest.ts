/**
 * @module archive/manifest
 * MAR-INF/MANIFEST.json: its type, TorchServe's layout (key order, 2-space indent) and the checks the
 * server makes when it reads one.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tsError } from '../errors.js';
import { resolveInside } from './inside.js';
import { isRecord } from '../is-record.js';
import { formatLocalTime } from '../local-time.js';

export const MANIFEST_PATH = 'MAR-INF/MANIFEST.json';
export const ARCHIVER_VERSION = '0.12.0';
export const RUNTIMES = ['python', 'python3', 'LSP'] as const;

export interface ManifestModel {
  modelName?: string;
  serializedFile?: string;
  handler?: string;
  modelFile?: string;
  modelVersion?: string;
  requirementsFile?: string;
  configFile?: string;
  description?: string;
  envelope?: string;
}

export interface Manifest {
  createdOn?: string;
  runtime: string;
  model: ManifestModel;
  archiverVersion?: string;
  description?: string;
}

/** A manifest as the server uses it: version defaulted, runtime checked. */
export interface ValidManifest extends Manifest {
  model: ManifestModel & { modelVersion: string };
}

/** Reads a model directory's manifest; a directory without one gets an empty python manifest. */
export function readManifest(modelDir: string): ValidManifest {
  const file = join(modelDir, MANIFEST_PATH);
  if (!existsSync(file)) return { runtime: 'python', model: { modelVersion: '1.0' } };
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw tsError('TSS_ERR_ARCHIVE_BAD_MANIFEST');
  }
  const manifest = validateManifest(parsed);
  confinePaths(manifest.model, modelDir);
  return manifest;
}

/** The manifest's fields that name a file of the archive. */
const PATH_FIELDS = ['serializedFile', 'modelFile', 'requirementsFile', 'configFile'] as const;

/**
 * Every file the manifest names stays inside the model directory: a hostile archive's
 * `"serializedFile": "../../other-model/model.onnx"` would otherwise load another model's files.
 * (The handler's path is confined where it is loaded, handler/load.ts.)
 */
function confinePaths(model: ManifestModel, modelDir: string): void {
  for (const field of PATH_FIELDS) {
    const value = model[field];
    if (value !== undefined && resolveInside(modelDir, value) === undefined) {
      throw tsError('TSS_ERR_ARCHIVE_INVALID', `Manifest field model.${field} names a file outside the model directory: ${value}`);
    }
  }
}

export function validateManifest(parsed: unknown): ValidManifest {
  if (!isRecord(parsed)) throw tsError('TSS_ERR_ARCHIVE_BAD_MANIFEST');
  const model = parsed.model;
  if (!isRecord(model)) throw tsError('TSS_ERR_ARCHIVE_INVALID', 'Missing Model entry in manifest file.');
  const runtime = parsed.runtime ?? 'python';
  if (typeof runtime !== 'string' || !(RUNTIMES as readonly string[]).includes(runtime)) {
    throw tsError('TSS_ERR_ARCHIVE_INVALID', 'Runtime is not defined or invalid.');
  }
  for (const [k, v] of Object.entries(model)) {
    if (typeof v !== 'string') throw tsError('TSS_ERR_ARCHIVE_INVALID', `Manifest field model.${k} must be a string.`);
  }
  const m = model as ManifestModel;
  return { ...(parsed as unknown as Manifest), runtime, model: { ...m, modelVersion: m.modelVersion ?? '1.0' } };
}

/** Serialises in TorchServe's key order, omitting keys that were not supplied. */
export function formatManifest(manifest: Manifest): string {
  const model: Record<string, string> = {};
  for (const key of ['modelName', 'serializedFile', 'handler', 'modelFile', 'modelVersion', 'requirementsFile', 'configFile'] as const) {
    const v = manifest.model[key];
    if (v !== undefined) model[key] = v;
  }
  return JSON.stringify(
    {
      createdOn: manifest.createdOn,
      runtime: manifest.runtime,
      model,
      archiverVersion: manifest.archiverVersion,
    },
    null,
    2,
  );
}

/** `DD/MM/YYYY HH:MM:SS` in local time, as the archiver writes `createdOn`. */
export function formatCreatedOn(d: Date): string {
  return formatLocalTime(d, 'dd/MM/yyyy HH:mm:ss');
}

/**
 * @module handler/load
 * Resolves the manifest's handler string (`module[:function]`) to an entry point, as TorchServe's
 * worker does: a module in the model directory, else a built-in handler by that name; then the
 * named function (default `handle`) if the module exports one, else its class.
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { builtinHandlerPath, splitHandler } from './builtins.js';
import type { Context, Handler, HandleFunction, HandlerOutput, RequestInput } from './types.js';

/** What the worker calls: set up once, then one call per batch. */
export interface EntryPoint {
  initialize(context: Context): Promise<void>;
  handle(batch: RequestInput[], context: Context): Promise<unknown>;
}

export class HandlerLoadError extends Error {}

export async function loadEntryPoint(handler: string, modelDir: string): Promise<EntryPoint> {
  const [moduleName, fnName] = splitHandler(handler);
  const path = findModule(moduleName, modelDir);
  if (!path) throw new HandlerLoadError(`Handler module not found: ${moduleName}`);
  const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const fn = mod[fnName ?? 'handle'];
  if (typeof fn === 'function' && !isClass(fn)) return functionEntryPoint(fn as HandleFunction);
  if (fnName) throw new HandlerLoadError(`Handler function ${fnName} not found in ${moduleName}`);
  return classEntryPoint(findClass(mod, moduleName));
}

/** `x.ts` prefers the `x.js` the archiver compiled beside it; no extension tries .js, .mjs, .ts. */
function findModule(moduleName: string, modelDir: string): string | undefined {
  const base = basename(moduleName);
  const stem = base.replace(/\.(m?[jt]s)$/, '');
  const candidates = base === stem || base.endsWith('.ts') ? [`${stem}.js`, `${stem}.mjs`, `${stem}.ts`] : [base];
  const local = candidates.map((c) => join(modelDir, c)).find((p) => existsSync(p));
  return local ?? builtinHandlerPath(stem);
}

function isClass(fn: unknown): boolean {
  return typeof fn === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

function findClass(mod: Record<string, unknown>, moduleName: string): new () => Handler {
  if (isClass(mod.default)) return mod.default as new () => Handler;
  const classes = Object.values(mod).filter(isClass);
  if (classes.length !== 1) {
    throw new HandlerLoadError(`${moduleName} must export a handle function, a default class, or exactly one class (found ${classes.length})`);
  }
  return classes[0] as new () => Handler;
}

function functionEntryPoint(fn: HandleFunction): EntryPoint {
  return {
    async initialize(context) {
      await fn(null, context);
    },
    async handle(batch, context) {
      return fn(batch, context);
    },
  };
}

function classEntryPoint(HandlerClass: new () => Handler): EntryPoint {
  const instance = new HandlerClass();
  if (typeof instance.handle !== 'function') throw new HandlerLoadError(`${HandlerClass.name} has no handle method`);
  return {
    async initialize(context) {
      await instance.initialize?.(context);
    },
    async handle(batch, context): Promise<HandlerOutput[]> {
      return instance.handle(batch, context);
    },
  };
}

/**
 * @module handler/builtins
 * How a manifest names its handler: `module[:function]`, or one of the handlers that ship with
 * tsserve (top-level `handlers/`) by name, as TorchServe's default handlers are:
 * `--handler image_classifier`.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BUILTIN_HANDLERS = ['base_handler', 'image_classifier', 'image_segmenter', 'object_detector', 'text_classifier'] as const;

export function isBuiltinHandler(name: string): boolean {
  return (BUILTIN_HANDLERS as readonly string[]).includes(name);
}

/** The compiled module of a built-in handler (dist/handlers/NAME.js). */
export function builtinHandlerPath(name: string): string | undefined {
  if (!isBuiltinHandler(name)) return undefined;
  const path = fileURLToPath(new URL(`../../handlers/${name}.js`, import.meta.url));
  return existsSync(path) ? path : undefined;
}

/** A handler string `path:fn`, careful not to split a Windows drive letter. */
export function splitHandler(handler: string): [string, string | undefined] {
  const i = handler.lastIndexOf(':');
  if (i <= 1) return [handler, undefined];
  return [handler.slice(0, i), handler.slice(i + 1)];
}

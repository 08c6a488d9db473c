/**
 * @module handler/builtins
 * The handlers that ship with tsserve (top-level `handlers/`), chosen by name as TorchServe's
 * default handlers are: `--handler image_classifier`.
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

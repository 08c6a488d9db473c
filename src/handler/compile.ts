/**
 * @module handler/compile
 * TypeScript handler sources to ESM JavaScript. The archiver calls this so archives carry `.js`;
 * a worker only calls it for an archive that holds a `.ts` without its `.js`. The compiler is
 * loaded on first use because importing it costs most of a second.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, sep } from 'node:path';
import type * as TypeScript from 'typescript';

let ts: typeof TypeScript | undefined;

export function compileTypeScript(source: string, fileName: string): string {
  ts ??= createRequire(import.meta.url)('typescript') as typeof TypeScript;
  const out = ts.transpileModule(source, {
    fileName,
    reportDiagnostics: false,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: false,
      sourceMap: false,
    },
  });
  return out.outputText;
}

/** The TypeScript sources under `dir` (not in node_modules, not `.d.ts`) without their compiled `.js`. */
export function uncompiledTypeScript(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name))
    .filter((file) => !file.split(sep).includes('node_modules') && !existsSync(file.replace(/\.ts$/, '.js')));
}

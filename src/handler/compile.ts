/**
 * @module handler/compile
 * TypeScript handler sources to ESM JavaScript. The archiver calls this so archives carry `.js`;
 * a worker only calls it for an archive that holds a `.ts` without its `.js`. The compiler is
 * loaded on first use because importing it costs most of a second.
 */
import { createRequire } from 'node:module';
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

/**
 * @module handler/compile
 * TypeScript handler sources to ESM JavaScript. The archiver calls this so archives carry `.js`;
 * a worker only calls it for an archive that holds a `.ts` without its `.js`.
 *
 * The `typescript` package is an optional peer: a user who only serves archives never needs it.
 * When it is installed, its `transpileModule` is used (it knows every syntax, decorators
 * included); without it, Node's own `stripTypeScriptTypes` (22.13+) does the job for the
 * TypeScript handlers are written in (types, enums, parameter properties). The compiler is
 * loaded on first use because importing it costs most of a second.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as nodeModule from 'node:module';
import { join } from 'node:path';
import type * as TypeScript from 'typescript';

type Transpile = (source: string, fileName: string) => string;

let transpile: Transpile | undefined;

export function compileTypeScript(source: string, fileName: string): string {
  transpile ??= typeScriptCompiler() ?? nodeTypeStripper();
  return transpile(source, fileName);
}

function typeScriptCompiler(): Transpile | undefined {
  let ts: typeof TypeScript;
  try {
    ts = createRequire(import.meta.url)('typescript') as typeof TypeScript;
  } catch {
    return undefined;
  }
  return (source, fileName) =>
    ts.transpileModule(source, {
      fileName,
      reportDiagnostics: false,
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        verbatimModuleSyntax: false,
        sourceMap: false,
      },
    }).outputText;
}

interface StripOptions {
  mode: 'strip' | 'transform';
  sourceUrl?: string;
}
type StripTypeScriptTypes = (source: string, options: StripOptions) => string;

function nodeTypeStripper(): Transpile {
  const strip = (nodeModule as { stripTypeScriptTypes?: StripTypeScriptTypes }).stripTypeScriptTypes;
  if (!strip) {
    return () => {
      throw new Error('Compiling a TypeScript handler needs Node.js 22.13 or later, or the typescript package (npm install typescript).');
    };
  }
  return (source, fileName) => strip(source, { mode: 'transform', sourceUrl: fileName });
}

/**
 * The TypeScript sources under `dir` (not `.d.ts`) without their compiled `.js`. node_modules is
 * not walked, nor is a link followed: an extracted model's node_modules links to tsserve and its
 * dependencies (archive/link-packages.ts), thousands of files a worker would stat at every start.
 */
export function uncompiledTypeScript(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : uncompiledTypeScript(path);
    const source = entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts');
    return source && !existsSync(path.replace(/\.ts$/, '.js')) ? [path] : [];
  });
}

/** @module version: the package version, read once from package.json. */
import { readFileSync } from 'node:fs';

/** The package's root: above dist/src/ when built, above src/ when the tests run the sources. */
const PACKAGE_JSON = new URL(import.meta.url.endsWith('.ts') ? '../package.json' : '../../package.json', import.meta.url);

export const VERSION: string = (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string }).version;

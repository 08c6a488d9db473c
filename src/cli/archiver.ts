/**
 * @module cli/archiver
 * `tsserve-archiver`: torch-model-archiver's flags, building a .mar tsserve serves.
 */
import { Command, Option } from 'commander';
import { ARCHIVE_FORMATS, ArchiverError, createArchive, type ArchiveOptions } from '../archive/write.js';
import { RUNTIMES } from '../archive/manifest.js';
import { BUILTIN_HANDLERS } from '../handler/builtins.js';
import { exitTwoOnUsageError } from './usage.js';

export function main(argv: string[]): void {
  const program = exitTwoOnUsageError(new Command('tsserve-archiver'))
    .description("Build a model archive (.mar) for tsserve, with torch-model-archiver's flags")
    .requiredOption('--model-name <name>', 'model name: output file name and manifest modelName')
    .requiredOption('-v, --version <version>', 'model version')
    .requiredOption('--handler <handler>', `built-in handler (${BUILTIN_HANDLERS.join(', ')}) or a .ts/.js handler file, optionally with :function`)
    .option('--serialized-file <path>', 'the model file (.onnx)')
    .option('--model-file <path>', 'a model definition file, copied into the archive')
    .option('--extra-files <list>', 'comma-separated files or directories to add; * ? [..] wildcards allowed')
    .addOption(new Option('--runtime <runtime>', 'manifest runtime').choices(RUNTIMES).default('python'))
    .option('--export-path <dir>', 'where to write the archive', '.')
    .addOption(new Option('--archive-format <format>', 'archive format').choices(ARCHIVE_FORMATS).default('default'))
    .option('-f, --force', 'overwrite an existing archive')
    .option('-r, --requirements-file <path>', 'requirements file, copied into the archive')
    .option('-c, --config-file <path>', 'model-config.yaml')
    .showHelpAfterError();
  program.parse(argv, { from: 'user' });
  // commander fills in the defaults of --runtime, --export-path and --archive-format.
  const o = program.opts<ArchiveOptions & Required<Pick<ArchiveOptions, 'runtime' | 'exportPath' | 'archiveFormat'>>>();
  try {
    const out = createArchive({ ...o, force: o.force === true });
    console.log(out);
  } catch (err) {
    if (!(err instanceof ArchiverError)) throw err;
    console.error(err.message);
    process.exit(1);
  }
}

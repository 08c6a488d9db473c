/**
 * @module cli/convert
 * `tsserve-convert old.mar`: a TorchServe archive made into one tsserve serves (convert/convert.ts).
 */
import { Command } from 'commander';
import { convertArchive, isConvertError } from '../convert/convert.js';
import { exitTwoOnUsageError } from './usage.js';

export async function main(argv: string[]): Promise<void> {
  const program = exitTwoOnUsageError(new Command('tsserve-convert'))
    .description('Convert a TorchServe model archive (PyTorch model, Python handler) into a tsserve one (ONNX model, TypeScript or built-in handler)')
    .argument('<archive>', 'the TorchServe archive: .mar, .tar.gz or a directory')
    .option('--export-path <dir>', 'where to write the new archive', '.')
    .option('--model-name <name>', "the new archive's model name (default: the old one's)")
    .option('--handler <handler>', 'a TypeScript port of a custom Python handler, or a built-in handler name')
    .option('--input-shape <dims>', "one input's shape without the batch axis (default for image handlers: 3,224,224)")
    .option('--python <path>', 'a Python with torch, to export the model', 'python3')
    .option('-f, --force', 'overwrite an existing archive')
    .showHelpAfterError();
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ exportPath: string; modelName?: string; handler?: string; inputShape?: string; python: string; force?: boolean }>();
  try {
    // Steps go to stderr, so stdout keeps only the result a script reads.
    const progress = (step: string): void => void process.stderr.write(`tsserve-convert: ${step}...\n`);
    const result = await convertArchive({ archive: program.args[0]!, ...o, progress });
    if (result.maxDifference !== undefined) {
      console.log(`Exported to ONNX; on a seeded batch its outputs are within ${result.maxDifference.toExponential(1)} of PyTorch's.`);
    }
    console.log(`Handler: ${result.handler}`);
    console.log(result.output);
  } catch (err) {
    if (!isConvertError(err)) throw err;
    console.error(err.message);
    process.exit(1);
  }
}

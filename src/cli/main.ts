import { CommanderError } from 'commander';
import { createProgram } from './program.ts';

try {
  await createProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`promosync: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

import { Command, CommanderError } from 'commander';
import { registerServe } from './serve.ts';
import { registerMachines } from './machines.ts';
import { registerInspect } from './inspect.ts';
import { registerKeys } from './keys.ts';
import { registerSend } from './send.ts';
import { registerFailed } from './failed.ts';
import { registerRebuild } from './rebuild.ts';
import { registerPurge } from './purge.ts';
import { registerBench } from './bench.ts';
import { registerCapacity } from './capacity.ts';

const program = new Command('promosync')
  .description(
    'Order-free status sync: applies unordered producer events to Postgres by ranks derived from XState machines',
  )
  .showHelpAfterError()
  .exitOverride();
registerServe(program);
registerMachines(program);
registerInspect(program);
registerKeys(program);
registerSend(program);
registerFailed(program);
registerRebuild(program);
registerPurge(program);
registerBench(program);
registerCapacity(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`promosync: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

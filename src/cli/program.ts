import { Command } from 'commander';
import { registerServe } from './serve.ts';
import { registerMachines } from './machines.ts';
import { registerInspect } from './inspect.ts';
import { registerKeys } from './keys.ts';
import { registerSend } from './send.ts';
import { registerFailed } from './failed.ts';
import { registerRebuild } from './rebuild.ts';
import { registerPurge } from './purge.ts';
import { registerWatch } from './watch.ts';
import { registerCapacity } from './capacity.ts';

/**
 * The `promosync` command with all its subcommands, not yet run: main.ts parses the process'
 * arguments with it, and tests read which commands exist.
 */
export function createProgram(): Command {
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
  registerWatch(program);
  registerCapacity(program);
  return program;
}

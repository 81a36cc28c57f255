import type { Command } from 'commander';
import { machines } from '../../machines/index.ts';
import { withDatabase } from './targets.ts';
import { MachineRegistry } from '../domain/index.ts';
import { parseDuration, purgeTombstones } from '../store/index.ts';

/** `purge`: the optional tombstone retention. */
export function registerPurge(program: Command): void {
  program
    .command('purge')
    .description(
      'delete entities that reached a final state (tombstones) before a cut-off, with their event log and old idempotency keys',
    )
    .requiredOption('--older-than <duration>', 'e.g. 90d, 12h')
    .option('--dry-run', 'count what would be purged, change nothing')
    .addHelpText(
      'after',
      '\nTombstones are kept forever unless you run this. A late event for a purged entity recreates it.\n' +
        '\nExamples:\n  promosync purge --older-than 180d --dry-run\n  promosync purge --older-than 180d',
    )
    .action(async (o: { olderThan: string; dryRun?: boolean }) => {
      const cutoff = new Date(Date.now() - parseDuration(o.olderThan));
      const r = await withDatabase((db) =>
        purgeTombstones(db.pool, MachineRegistry.from(machines), cutoff, { dryRun: o.dryRun ?? false }),
      );
      const verb = r.dryRun ? 'would purge' : 'purged';
      for (const [m, n] of Object.entries(r.entities))
        process.stdout.write(`${verb} ${n} ${m} tombstone(s) older than ${cutoff.toISOString()}\n`);
      process.stdout.write(`${verb} ${r.events} event-log row(s) and ${r.eventKeys} idempotency key(s)\n`);
    });
}

import type { Command } from 'commander';
import { machines } from '../../machines/index.ts';
import { MachineRegistry, type Drift, type FieldEntry } from '../domain/index.ts';
import { rebuildRows, type EntityDrift, type RebuildReport } from '../store/index.ts';
import { withDatabase } from './targets.ts';

function show(v: Drift['stored']): string {
  if (v === undefined) return '(none)';
  if (v === null) return 'null';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'object') {
    const f = v as FieldEntry;
    return `${JSON.stringify(f.value)} (by ${f.event}${f.version === null ? '' : ` v${f.version}`})`;
  }
  return JSON.stringify(v);
}

/** Drifted fields printed per entity; the rest are counted in one summary line. */
export const MAX_DRIFT_LINES = 20;

const count = (n: number): string => n.toLocaleString('en-US');

/** Appends the lines of one entity to `out`: at most {@link MAX_DRIFT_LINES} fields and a summary. */
function describe(d: EntityDrift, out: string[]): void {
  const id = `${d.machine}/${d.entityId}`;
  const fixed = d.fixed ? '  [fixed]' : '';
  switch (d.kind) {
    case 'drift': {
      // An entity can drift in any number of fields: print a bounded part, never spread them.
      const shown = Math.min(d.drifts.length, MAX_DRIFT_LINES);
      const rest = d.drifts.length - shown;
      for (let i = 0; i < shown; i++) {
        const x = d.drifts[i]!;
        const last = i === shown - 1 && rest === 0;
        out.push(
          `  ${id}  ${x.field}: stored ${show(x.stored)}, recomputed ${show(x.recomputed)}${last ? fixed : ''}`,
        );
      }
      if (rest > 0) {
        out.push(
          `  ${id}  ... and ${count(rest)} more drifted fields (${count(d.drifts.length)} in all)${fixed}`,
        );
      }
      return;
    }
    case 'missing-row':
      out.push(`  ${id}  row missing, the log has events for it${fixed}`);
      return;
    case 'no-events':
      out.push(`  ${id}  row has no events in the log (left alone)`);
      return;
    case 'unreplayable':
      out.push(`  ${id}  cannot be replayed: ${d.reason} (left alone)`);
      return;
  }
}

/** The report as printed on stdout. */
export function formatRebuildReport(r: RebuildReport, fix: boolean): string {
  const out: string[] = [];
  for (const m of r.machines)
    out.push(`${m.machine}: checked ${m.rows} rows against ${m.events} logged events`);
  const fixable = r.drifted.filter((d) => d.kind === 'drift' || d.kind === 'missing-row');
  if (r.drifted.length === 0) out.push('no drift: every row equals its event log');
  else {
    out.push(`drift in ${r.drifted.length} entit${r.drifted.length === 1 ? 'y' : 'ies'}:`);
    for (const d of r.drifted) describe(d, out);
    if (fix) out.push(`fixed ${r.drifted.filter((d) => d.fixed).length} of ${fixable.length} fixable rows`);
    else if (fixable.length > 0) out.push('run with --fix to rewrite these rows from the log');
  }
  return `${out.join('\n')}\n`;
}

/** `rebuild [--fix] [--machine m]`. */
export function registerRebuild(program: Command): void {
  program
    .command('rebuild')
    .description('recompute every row from the event log and report drift (--fix rewrites drifted rows)')
    .option('--fix', 'rewrite drifted rows and recreate missing ones from the log')
    .option('--machine <name>', 'only this machine')
    .addHelpText(
      'after',
      `
Each row is recomputed by applying its logged events (in log order, duplicates left out)
with the same rule the workers use, and compared column by column: status, last event,
key, version, merchant, anomalies and each attribute with the event that wrote it. A row
edited by hand, restored from another backup than its log, or written by a bug shows up
as drift (at most 20 fields per entity are listed, then a count of the rest).
--fix rewrites such rows under their row lock, so it is safe while workers run.
Exit status 1 when drift remains (none found, or all of it fixed: 0).

Examples:
  promosync rebuild
  promosync rebuild --machine promotion --fix
  DATABASE_URL=postgresql://db/promosync promosync rebuild`,
    )
    .action(async (o: { fix?: boolean; machine?: string }) => {
      const registry = MachineRegistry.from(machines);
      const report = await withDatabase(
        (db) =>
          rebuildRows(db.pool, registry, {
            fix: o.fix ?? false,
            ...(o.machine ? { machine: o.machine } : {}),
            onProgress: (machine, rows) => {
              if (process.stderr.isTTY) process.stderr.write(`\r${machine}: ${rows} rows checked`);
            },
          }),
        2,
      );
      if (process.stderr.isTTY) process.stderr.write('\n');
      process.stdout.write(formatRebuildReport(report, o.fix ?? false));
      const left = report.drifted.filter((d) => !d.fixed);
      if (left.length > 0) process.exitCode = 1;
    });
}

import type { Command } from 'commander';
import { withDatabase } from './targets.ts';
import { ID_PATTERN, type LimitsPatch } from '../domain/index.ts';
import { capacitySummary, setLimits } from '../store/index.ts';

/** A limit option: a non-negative integer, or `none` to remove the limit. */
function limit(name: string, v: string | undefined): number | null | undefined {
  if (v === undefined) return undefined;
  if (v === 'none') return null;
  if (!/^\d{1,13}$/.test(v)) throw new Error(`${name} must be a non-negative integer or "none"`);
  return Number(v);
}

function promotionId(id: string): string {
  if (!ID_PATTERN.test(id)) throw new Error('the promotion id must be 1-128 characters of [A-Za-z0-9._:-]');
  return id;
}

/**
 * `capacity show|set`: a promotion's limits and their use, read and written in the database
 * directly (like `keys`), so an operator needs no API key.
 */
export function registerCapacity(program: Command): void {
  const cmd = program.command('capacity').description("show or set a promotion's redemption limits");
  cmd
    .command('show')
    .description('print the limits and their use (confirmed, held, remaining) as JSON')
    .argument('<promotionId>')
    .option('--customer <customerId>', 'also show the perCustomer figures of this customer')
    .action(async (id: string, o: { customer?: string }) => {
      const summary = await withDatabase((db) => capacitySummary(db.pool, promotionId(id), o.customer));
      process.stdout.write(
        `${JSON.stringify(summary ?? { promotionId: id, total: null, perCustomer: null, perWindow: null }, null, 2)}\n`,
      );
    });
  cmd
    .command('set')
    .description('set limits; options left out keep their limit, "none" removes one')
    .argument('<promotionId>')
    .option('--total <n|none>', 'units over the promotion’s lifetime')
    .option('--per-customer <n|none>', 'units one customer may hold or have confirmed')
    .option('--window-seconds <s>', 'length of the sliding window (with --window-max)')
    .option('--window-max <n|none>', 'units reserved within any window; none removes the window limit')
    .addHelpText(
      'after',
      '\nExamples:\n  promosync capacity set promo-123 --total 1000 --per-customer 1\n' +
        '  promosync capacity set promo-123 --window-seconds 3600 --window-max 200\n' +
        '  promosync capacity set promo-123 --total none',
    )
    .action(
      async (
        id: string,
        o: { total?: string; perCustomer?: string; windowSeconds?: string; windowMax?: string },
      ) => {
        const patch: LimitsPatch = {};
        const total = limit('--total', o.total);
        const perCustomer = limit('--per-customer', o.perCustomer);
        if (total !== undefined) patch.total = total;
        if (perCustomer !== undefined) patch.perCustomer = perCustomer;
        const windowMax = limit('--window-max', o.windowMax);
        if (windowMax === null) patch.perWindow = null;
        else if (windowMax !== undefined || o.windowSeconds !== undefined) {
          const seconds = limit('--window-seconds', o.windowSeconds);
          if (windowMax === undefined || seconds === undefined || seconds === null || seconds < 1)
            throw new Error('a window limit needs both --window-seconds (≥ 1) and --window-max');
          patch.perWindow = { seconds, max: windowMax };
        }
        if (Object.keys(patch).length === 0)
          throw new Error('nothing to set: give at least one limit option');
        const summary = await withDatabase(async (db) => {
          await setLimits(db.pool, promotionId(id), patch);
          return capacitySummary(db.pool, id);
        });
        process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
      },
    );
}

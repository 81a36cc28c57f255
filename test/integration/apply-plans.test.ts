import { describe, expect, it } from 'vitest';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../../src/domain/index.ts';
import { useStore } from '../helpers/store.ts';

/**
 * The apply statement is prepared once per connection and run with arrays of every batch's
 * size. A plan made for arrays of unknown length guesses a hundred elements each and joins the
 * batch's steps by nested loops, which on batches of thousands costs seconds per statement; the
 * planner switches to such a generic plan by itself once it looks cheaper than the plans made
 * for the first batches. So every run of the statement is planned for its own arrays.
 */
describe('the apply statement is planned for each batch', () => {
  const registry = MachineRegistry.from(machines);
  const store = useStore(registry, 1);

  const batch = (round: number, size: number) =>
    registry
      .prepare(
        Array.from({ length: size }, (_, i) => ({
          machine: 'promotion',
          entityId: `plan-${round}-${i}`,
          type: 'activate',
          eventId: `plan-e${round}-${i}`,
          data: { title: `t${i}` },
        })),
        'src',
        true,
      )
      .map((event) => ({ event, jobId: null }));

  it('never with a generic plan, however many large batches came before', async () => {
    // Large batches first: their plans cost the most, which is when the planner would take the
    // generic plan for good.
    for (let round = 0; round < 8; round++) {
      const out = await store.applier.apply(batch(round, 2000));
      expect(out.every((r) => r.outcome === 'applied')).toBe(true);
    }
    // The pool has one connection: the applier's prepared statement is on it.
    const { rows } = await store.pool.query<{ generic_plans: string; custom_plans: string }>(
      `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'promosync_apply'`,
    );
    expect(rows).toHaveLength(1);
    expect(Number(rows[0]!.generic_plans)).toBe(0);
    expect(Number(rows[0]!.custom_plans)).toBe(8);
  });
});

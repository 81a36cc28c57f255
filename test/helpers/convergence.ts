import { expect } from 'vitest';
import fc from 'fast-check';
import type { EventInput } from '../../src/domain/event-schema.ts';
import { comparableRow, type ComparedRow } from '../../bench/verify.ts';
import type { Harness } from './harness.ts';
import { deliveredHistoriesArb } from './histories.ts';
import { applyInOrder, comparable } from './expected.ts';

/** How producers retry a job they add straight to BullMQ. */
export const JOB_RETRIES = { attempts: 5, backoff: { type: 'exponential', delay: 50 } };

/** A job's data for a chunk of events: a single event bare, several as a batch. */
export function jobData(chunk: EventInput[]): Record<string, unknown> {
  return chunk.length === 1 ? { source: 'test-src', ...chunk[0]! } : { source: 'test-src', events: chunk };
}

/**
 * The convergence property through the queue: `runs` times, `histories` histories of `machine`
 * are delivered (shuffled, some events twice, some lost) in chunks of random sizes, which
 * `deliver` adds as jobs and waits for the workers to apply; then every history's row must
 * equal the in-order application of its delivered events. Returns how many rows it checked.
 */
export async function assertQueueConvergence(
  h: Harness,
  machine: string,
  o: { prefix: string; histories: number; runs: number; deliver(chunks: EventInput[][]): Promise<void> },
): Promise<number> {
  const info = h.service.registry.get(machine)!;
  let checked = 0;
  await fc.assert(
    fc.asyncProperty(
      deliveredHistoriesArb(info, { minLength: o.histories, maxLength: o.histories }, o.prefix),
      fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }),
      async (c, sizes) => {
        const chunks: EventInput[][] = [];
        for (let at = 0, i = 0; at < c.sent.length; i++) {
          const chunk = c.sent.slice(at, at + sizes[i % sizes.length]!);
          at += chunk.length;
          chunks.push(chunk);
        }
        await o.deliver(chunks);

        const rows = await h.service.db.pool.query<ComparedRow>(
          'SELECT entity_id, status, last_event, version, merchant_id, fields FROM entity WHERE machine = $1 AND entity_id = ANY($2)',
          [machine, c.histories.map((x) => x.entityId)],
        );
        const byId = new Map(rows.rows.map((r) => [r.entity_id, r]));
        c.histories.forEach((hist, i) => {
          const expected = comparable(applyInOrder(h.service.registry, c.delivered[i]!));
          const row = byId.get(hist.entityId);
          expect(row && comparableRow(row), `entity ${hist.entityId}`).toEqual(expected);
          checked += 1;
        });
      },
    ),
    { numRuns: o.runs, endOnFailure: true },
  );
  return checked;
}

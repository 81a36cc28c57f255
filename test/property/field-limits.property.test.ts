import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { machines } from '../../machines/index.ts';
import { DEFAULT_EVENT_LIMITS, type EventInput } from '../../src/domain/event-schema.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import { rebuildRows } from '../../src/store/rebuild.ts';
import { useStore } from '../helpers/store.ts';

const MAX_FIELDS = 4;
const MAX_BYTES = 120;
const registry = MachineRegistry.from(machines, false, {
  ...DEFAULT_EVENT_LIMITS,
  entity: { maxFields: MAX_FIELDS, maxFieldBytes: MAX_BYTES },
});

/** What one field counts for against the byte limit (docs/design.md#attribute-limits). */
const sizeOf = (name: string, value: unknown): number =>
  Buffer.byteLength(name) + (typeof value === 'string' ? Buffer.byteLength(value) : 8);

const eventArb = fc.record({
  entity: fc.integer({ min: 0, max: 2 }),
  type: fc.constantFrom('create', 'activate', 'complete', 'delete'),
  version: fc.integer({ min: 1, max: 6 }),
  source: fc.constantFrom('src-a', 'src-a', 'src-b'),
  merchant: fc.option(fc.constantFrom('m-1', 'm-2'), { freq: 3 }),
  data: fc.option(
    fc.dictionary(
      fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'ü'),
      fc.oneof(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.integer(), fc.boolean()),
      { minKeys: 1, maxKeys: 4 },
    ),
    { freq: 4 },
  ),
  id: fc.integer({ min: 0, max: 30 }),
});

// Whatever the events, their order and their batches, no row ever holds more fields, or larger
// ones, than its limits allow, and every row equals the replay of its log (rejections for the
// limits being final), so `rebuild` finds nothing to fix.
describe('entity field limits hold under any batches', () => {
  const store = useStore(registry);

  it('rows stay within the limits and equal the replay of their logs', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 15 }), { minLength: 1, maxLength: 4 }),
        async (raw, sizes) => {
          run += 1;
          // Events whose data alone passes an entity's limits are refused by validation (a 400).
          const prepared = raw.flatMap((r) => {
            const input: EventInput = {
              machine: 'promotion',
              entityId: `lim-${run}-${r.entity}`,
              type: r.type,
              version: r.version,
              // Repeated ids are retries (same content) or producer bugs (conflicts).
              eventId: `ev-${run}-${r.id}`,
              ...(r.merchant ? { merchantId: r.merchant } : {}),
              ...(r.data ? { data: r.data } : {}),
            };
            try {
              return registry.prepare([input], r.source, true);
            } catch {
              return [];
            }
          });
          for (let at = 0, i = 0; at < prepared.length; i++) {
            const chunk = prepared.slice(at, at + sizes[i % sizes.length]!);
            at += chunk.length;
            await store.applier.apply(chunk.map((event) => ({ event, jobId: null })));
          }
          const { rows } = await store.pool.query<{ fields: Record<string, { v: unknown }> }>(
            `SELECT fields FROM entity WHERE entity_id LIKE $1`,
            [`lim-${run}-%`],
          );
          for (const r of rows) {
            const entries = Object.entries(r.fields);
            expect(entries.length).toBeLessThanOrEqual(MAX_FIELDS);
            expect(entries.reduce((n, [name, f]) => n + sizeOf(name, f.v), 0)).toBeLessThanOrEqual(MAX_BYTES);
          }
          const report = await rebuildRows(store.pool, registry);
          expect(report.drifted.filter((d) => d.entityId.startsWith(`lim-${run}-`))).toEqual([]);
        },
      ),
      { numRuns: 150 },
    );
    // The limits were met often enough to prove something.
    const { rows } = await store.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM event_log WHERE outcome = 'rejected' AND reason LIKE 'entity field limit%'`,
    );
    expect(rows[0]!.n).toBeGreaterThan(10);
  });
});

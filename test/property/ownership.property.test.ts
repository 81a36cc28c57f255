import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import { ownerOf, recomputeRow } from '../../src/domain/rebuild.ts';
import { storedValues, type StoredField } from '../../src/domain/stored-fields.ts';
import { useStore } from '../helpers/store.ts';
import { comparableOwned, prepareFrom } from '../helpers/expected.ts';
import { deliveredHistoriesArb, sendersArb } from '../helpers/histories.ts';

const registry = MachineRegistry.from(machines);

// Two producers write the same entities: the creator (src-a, mostly) and src-b, whose key is
// granted src-a for some events. Whatever the arrival order and however the events are split
// into statements, each row must end as the in-order application of its delivered events:
// owned by the source of its first event, foreign events rejected unless granted.
describe('ownership by source converges in the store', () => {
  const store = useStore(registry);

  for (const machine of ['promotion', 'campaign']) {
    it(`every ${machine} row and owner equal the in-order application, whatever the arrival order and batches`, async () => {
      const arb = deliveredHistoriesArb(
        registry.get(machine)!,
        { minLength: 1, maxLength: 12 },
        `${machine}-o`,
      );
      await fc.assert(
        fc.asyncProperty(
          arb,
          sendersArb,
          fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 5 }),
          async ({ histories, delivered, sent }, senderOf, sizes) => {
            const events = prepareFrom(registry, sent, senderOf);
            for (let at = 0, i = 0; at < events.length; i++) {
              const chunk = events.slice(at, at + sizes[i % sizes.length]!);
              at += chunk.length;
              await store.applier.apply(chunk.map((event) => ({ event, jobId: null })));
            }
            const { rows } = await store.pool.query<{
              entity_id: string;
              status: string;
              last_event: string;
              version: string | null;
              merchant_id: string | null;
              owner_source: string | null;
              fields: Record<string, StoredField>;
            }>(
              `SELECT entity_id, status, last_event, version::text, merchant_id, owner_source, fields
               FROM entity WHERE machine = $1 AND entity_id = ANY($2)`,
              [machine, histories.map((h) => h.entityId)],
            );
            const byId = new Map(rows.map((r) => [r.entity_id, r]));
            histories.forEach((h, i) => {
              const inOrder = prepareFrom(registry, delivered[i]!, senderOf);
              const reach = (a: string, b: string) => registry.isReachable(machine, a, b);
              const r = byId.get(h.entityId);
              const actual = r && {
                status: r.status,
                lastEvent: r.last_event,
                version: r.version === null ? null : Number(r.version),
                merchantId: r.merchant_id,
                attributes: storedValues(r.fields),
                owner: r.owner_source,
              };
              expect(actual, h.entityId).toEqual(
                comparableOwned(recomputeRow(inOrder, reach, ownerOf(inOrder))),
              );
            });
          },
        ),
        { numRuns: 40 },
      );
    }, 300_000);
  }
});

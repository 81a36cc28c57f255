import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mergeEvent, type EntityState } from '../../src/domain/merge.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import type { EventInput } from '../../src/domain/event-schema.ts';
import { machines } from '../../machines/index.ts';
import {
  applyArrivals,
  applyInOrder,
  comparable,
  comparableOwned,
  prepareFrom,
} from '../helpers/expected.ts';
import { deliveryArb, historyArb, renamed, sendersArb, type GeneratedHistory } from '../helpers/histories.ts';
import { ownerOf, recomputeRow } from '../../src/domain/rebuild.ts';

const registry = MachineRegistry.from(machines);
const RUNS = 1000;

/** A few histories of one machine for distinct entities, and what the transport made of them. */
const scenarioArb = (machine: string) => {
  const info = registry.get(machine)!;
  return fc
    .array(historyArb(info), { minLength: 1, maxLength: 4 })
    .map((hs) => hs.map((h, i) => renamed(h, `${machine}-${i}`)))
    .chain((histories) => deliveryArb(histories).map((d) => ({ histories, ...d })));
};

/** Folds events in arrival order with the apply rule; one `seen` set, as in the store. */
function foldArrivals(events: EventInput[]): {
  rows: Map<string, EntityState>;
  anomalies: number;
} {
  const rows = new Map<string, EntityState>();
  const seen = new Map<string, string>();
  let anomalies = 0;
  for (const input of events) {
    const [e] = registry.prepare([input], 'test-src', false);
    const r = mergeEvent(rows.get(e!.entityId), e!, seen, (a, b) => registry.isReachable(e!.machine, a, b));
    if (r.state) rows.set(e!.entityId, r.state);
    if (r.anomaly) anomalies += 1;
  }
  return { rows, anomalies };
}

const withoutEventIds = (events: EventInput[]): EventInput[] =>
  events.map((e) => {
    const copy = { ...e };
    delete copy.eventId;
    return copy;
  });

const expectConverged = (histories: GeneratedHistory[], delivered: EventInput[][], sent: EventInput[]) => {
  const { rows } = foldArrivals(sent);
  histories.forEach((h, i) => {
    expect(comparable(rows.get(h.entityId)), h.entityId).toEqual(
      comparable(applyInOrder(registry, delivered[i]!)),
    );
  });
};

describe.each(['promotion', 'campaign'])('convergence of the apply rule (%s)', (machine) => {
  it('any arrival order, with duplicates and lost intermediates, ends in the in-order state', () => {
    fc.assert(
      fc.property(scenarioArb(machine), ({ histories, delivered, sent }) => {
        expectConverged(histories, delivered, sent);
      }),
      { numRuns: RUNS },
    );
  });

  it('duplicates are recognised by their key when producers send no eventId', () => {
    fc.assert(
      fc.property(scenarioArb(machine), ({ histories, delivered, sent }) => {
        expectConverged(histories, delivered.map(withoutEventIds), withoutEventIds(sent));
      }),
      { numRuns: RUNS },
    );
  });

  it('the last event of a history decides the status, whatever arrived before it', () => {
    fc.assert(
      fc.property(scenarioArb(machine), ({ histories, sent }) => {
        const { rows } = foldArrivals(sent);
        for (const h of histories) {
          const last = h.events.at(-1)!;
          const target = registry.get(machine)!.events.get(last.type)!.target;
          expect(rows.get(h.entityId)).toMatchObject({ status: target, lastEvent: last.type });
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('a history delivered in order, even with lost events, has no anomalies', () => {
    fc.assert(
      fc.property(scenarioArb(machine), ({ delivered }) => {
        expect(foldArrivals(delivered.flat()).anomalies).toBe(0);
      }),
      { numRuns: RUNS },
    );
  });
});

describe.each(['promotion', 'campaign'])('convergence with two sources (%s)', (machine) => {
  it('any arrival order ends in the in-order state and owner, foreign events rejected unless granted', () => {
    fc.assert(
      fc.property(scenarioArb(machine), sendersArb, ({ histories, delivered, sent }, senderOf) => {
        const rows = applyArrivals(registry, prepareFrom(registry, sent, senderOf));
        histories.forEach((h, i) => {
          // In history order keys only grow: the first event's source owns the entity throughout.
          const inOrder = prepareFrom(registry, delivered[i]!, senderOf);
          const reach = (a: string, b: string) => registry.isReachable(machine, a, b);
          const expected = recomputeRow(inOrder, reach, ownerOf(inOrder));
          expect(comparableOwned(rows.get(`${machine}\u0000${h.entityId}`)), h.entityId).toEqual(
            comparableOwned(expected),
          );
        });
      }),
      { numRuns: RUNS },
    );
  });

  it('the owner is the source of the first event of the history, however the events arrive', () => {
    fc.assert(
      fc.property(scenarioArb(machine), sendersArb, ({ histories, delivered, sent }, senderOf) => {
        const rows = applyArrivals(registry, prepareFrom(registry, sent, senderOf));
        histories.forEach((h, i) => {
          const first = delivered[i]![0]!;
          expect(rows.get(`${machine}\u0000${h.entityId}`)?.owner?.source, h.entityId).toBe(
            senderOf(first).source,
          );
        });
      }),
      { numRuns: RUNS },
    );
  });
});

import fc from 'fast-check';
import { getInitialSnapshot, getNextSnapshot, type AnyStateMachine } from 'xstate';
import type { MachineInfo } from '../../src/domain/registry.ts';
import type { EventInput } from '../../src/domain/event-schema.ts';

/** Attribute values the generated events carry; null means "no change". */
const fieldValue = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer({ min: -1000, max: 1000 }),
  fc.boolean(),
  fc.constant(null),
);
const dataArb = fc.option(
  fc.dictionary(fc.constantFrom('title', 'discount', 'budget', 'channel'), fieldValue, { maxKeys: 3 }),
  {
    nil: undefined,
  },
);

/**
 * Event types, in valid order, of a random walk through the machine itself: starting at the
 * initial state (with the creation event, if the machine declares one), each step picks one
 * event the current snapshot accepts (XState's own `can`/`getNextSnapshot`).
 */
export function walk(info: MachineInfo, choices: number[]): string[] {
  const machine: AnyStateMachine = info.machine;
  const types = info.analysis.events.map((e) => e.type).filter((t) => t !== info.analysis.creationEvent);
  let snapshot = getInitialSnapshot(machine);
  const out = info.analysis.creationEvent ? [info.analysis.creationEvent] : [];
  for (const c of choices) {
    if (snapshot.status !== 'active') break;
    const possible = types.filter((t) => snapshot.can({ type: t }));
    if (possible.length === 0) break;
    const type = possible[c % possible.length]!;
    snapshot = getNextSnapshot(machine, snapshot, { type });
    out.push(type);
  }
  return out;
}

export interface GeneratedHistory {
  entityId: string;
  /** The valid history, in order. */
  events: EventInput[];
}

/**
 * A valid history of one entity: events from a walk of the machine, increasing versions
 * (when `withVersions`, or always for version-ordered machines), random partial `data`,
 * and the entity's merchant on some events.
 */
export function historyArb(info: MachineInfo, entityId = 'entity'): fc.Arbitrary<GeneratedHistory> {
  const needsVersion = info.analysis.ordering === 'version';
  return fc
    .record({
      choices: fc.array(fc.nat(), { minLength: 0, maxLength: 10 }),
      data: fc.array(dataArb, { minLength: 11, maxLength: 11 }),
      merchantOn: fc.array(fc.boolean(), { minLength: 11, maxLength: 11 }),
      withVersions: fc.boolean(),
      versionStart: fc.nat({ max: 1000 }),
    })
    .map(({ choices, data, merchantOn, withVersions, versionStart }) => {
      const types = walk(info, choices);
      const events = types.map((type, i): EventInput => {
        const e: EventInput = { machine: info.analysis.name, entityId, type, eventId: `${entityId}-e${i}` };
        if (withVersions || needsVersion) e.version = versionStart + i * 3 + 1;
        if (merchantOn[i]) e.merchantId = 'm-1';
        if (data[i]) e.data = data[i]!;
        return e;
      });
      return { entityId, events };
    });
}

/**
 * What the transport does to a history: drops some events that are not the last one,
 * duplicates some, and interleaves everything with the other entities' events.
 */
export function deliveryArb(
  histories: GeneratedHistory[],
): fc.Arbitrary<{ delivered: EventInput[][]; sent: EventInput[] }> {
  const all = histories.flatMap((h) => h.events.map((e, i) => ({ e, last: i === h.events.length - 1 })));
  return fc
    .record({
      drop: fc.array(fc.boolean(), { minLength: all.length, maxLength: all.length }),
      dup: fc.array(fc.nat({ max: 9 }), { minLength: all.length, maxLength: all.length }),
      order: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), {
        minLength: all.length * 2,
        maxLength: all.length * 2,
      }),
    })
    .map(({ drop, dup, order }) => {
      // About 15% of the non-last events are lost, 20% of the rest arrive twice.
      const kept = all.filter((x, i) => x.last || !(drop[i] && dup[i]! < 3));
      const keptSet = new Set(kept.map((x) => x.e));
      const copies = kept.flatMap((x, i) => (dup[i]! >= 8 ? [x.e, x.e] : [x.e]));
      const keyed = copies.map((e, i) => ({ e, k: order[i % order.length]! + i * 1e-9 }));
      keyed.sort((a, b) => a.k - b.k);
      return {
        delivered: histories.map((h) => h.events.filter((e) => keptSet.has(e))),
        sent: keyed.map((x) => x.e),
      };
    });
}

/** The same history under another entity id (event ids follow). */
export function renamed(h: GeneratedHistory, entityId: string): GeneratedHistory {
  return { entityId, events: h.events.map((e, i) => ({ ...e, entityId, eventId: `${entityId}-e${i}` })) };
}

/**
 * Arrays of histories of one machine, each array with its delivery: the histories renamed
 * `${prefix}${n}-${i}`, where n counts the arrays generated so far (so that the runs of a
 * property never share an entity).
 */
export function deliveredHistoriesArb(
  info: MachineInfo,
  size: { minLength: number; maxLength: number },
  prefix: string,
): fc.Arbitrary<{ histories: GeneratedHistory[]; delivered: EventInput[][]; sent: EventInput[] }> {
  let run = 0;
  return fc.array(historyArb(info), size).chain((hs) => {
    run += 1;
    const histories = hs.map((x, i) => renamed(x, `${prefix}${run}-${i}`));
    return deliveryArb(histories).map((d) => ({ histories, ...d }));
  });
}

/** The sources two producers write under in the ownership properties. */
export const OWNER_SOURCES = ['src-a', 'src-b'] as const;

/**
 * Who sends each event: mostly `src-a`, about a third `src-b`, and about half of `src-b`'s
 * events with a key granted `src-a` (`mayWriteFor`). Picked per eventId, so every copy of an
 * event comes from the same source.
 */
export const sendersArb = fc.array(fc.nat({ max: 5 }), { minLength: 61, maxLength: 61 }).map((picks) => {
  const pickOf = (eventId: string): number => {
    let h = 7;
    for (let i = 0; i < eventId.length; i++) h = (h * 31 + eventId.charCodeAt(i)) % 61;
    return picks[h]!;
  };
  return (e: EventInput): { source: string; mayWriteFor?: string[] } => {
    const p = pickOf(e.eventId ?? `${e.entityId}/${e.type}/${e.version ?? ''}`);
    if (p < 4) return { source: 'src-a' };
    return p === 4 ? { source: 'src-b' } : { source: 'src-b', mayWriteFor: ['src-a'] };
  };
});

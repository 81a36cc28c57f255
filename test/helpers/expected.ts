import type { EventInput } from '../../src/domain/event-schema.ts';
import { attributesOf, mergeEvent, type EntityState } from '../../src/domain/merge.ts';
import type { MachineRegistry, PreparedEvent } from '../../src/domain/registry.ts';
import { ownerOf, recomputeRow } from '../../src/domain/rebuild.ts';

/** The row a list of events leads to when applied one by one in the given order. */
export function applyInOrder(
  registry: MachineRegistry,
  events: EventInput[],
  source = 'test-src',
): EntityState | undefined {
  const seen = new Map<string, string>();
  let state: EntityState | undefined;
  for (const input of events) {
    const [e] = registry.prepare([input], source, false);
    state = mergeEvent(state, e!, seen, (a, b) => registry.isReachable(e!.machine, a, b)).state;
  }
  return state;
}

/** The parts of a row the convergence property compares. */
export function comparable(state: EntityState | undefined) {
  if (!state) return undefined;
  return {
    status: state.status,
    lastEvent: state.lastEvent,
    version: state.version,
    merchantId: state.merchantId,
    attributes: attributesOf(state),
  };
}

/**
 * Folds prepared events in arrival order as the store does, across entities: event by event
 * with the apply rule, and when an event moves an entity's owner to another source, the row
 * recomputed from all of its events but conflicts (as the store recomputes it from its log).
 */
export function applyArrivals(
  registry: MachineRegistry,
  events: readonly PreparedEvent[],
): Map<string, EntityState> {
  const seen = new Map<string, string>();
  const rows = new Map<string, EntityState>();
  const logs = new Map<string, PreparedEvent[]>();
  for (const e of events) {
    const k = `${e.machine}\u0000${e.entityId}`;
    const reach = (a: string, b: string) => registry.isReachable(e.machine, a, b);
    const r = mergeEvent(rows.get(k), e, seen, reach);
    const log = logs.get(k) ?? [];
    if (r.outcome !== 'conflict') logs.set(k, [...log, e]);
    const state = r.ownerMoved ? recomputeRow(logs.get(k)!, reach, ownerOf(logs.get(k)!)) : r.state;
    if (state) rows.set(k, state);
  }
  return rows;
}

/** {@link comparable} with the owning source. */
export function comparableOwned(state: EntityState | undefined) {
  return state && { ...comparable(state), owner: state.owner?.source ?? null };
}

/** Prepares each event under the source (and grants) `senderOf` says it came from. */
export function prepareFrom(
  registry: MachineRegistry,
  events: readonly EventInput[],
  senderOf: (e: EventInput) => { source: string; mayWriteFor?: string[] },
): PreparedEvent[] {
  return events.map((input) => {
    const { source, mayWriteFor } = senderOf(input);
    const [e] = registry.prepare([input], source, false);
    return mayWriteFor ? { ...e!, mayWriteFor } : e!;
  });
}

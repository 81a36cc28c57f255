import type { EventInput } from '../../src/domain/event-schema.ts';
import { attributesOf, mergeEvent, type EntityState } from '../../src/domain/merge.ts';
import type { MachineRegistry } from '../../src/domain/registry.ts';

/** The row a list of events leads to when applied one by one in the given order. */
export function applyInOrder(
  registry: MachineRegistry,
  events: EventInput[],
  source = 'test-src',
): EntityState | undefined {
  const seen = new Set<string>();
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

import { contentHash } from './content-hash.ts';
import { mayActFor, ownerAfter, type Owner } from './ownership.ts';
import type { FieldValue } from './field-limits.ts';
import type { PreparedEvent } from './registry.ts';

/** What happened to one event (docs/design.md#outcomes). */
export type Outcome = 'applied' | 'stale' | 'duplicate' | 'conflict' | 'rejected';

/** The (source, eventId) pairs seen so far, each with the {@link contentHash} of its first event. */
export type SeenIds = Map<string, string>;

/** One attribute and the key of the event that last wrote it. */
export interface FieldEntry {
  value: FieldValue;
  key: bigint;
  event: string;
  version: number | null;
}

/** The consumer-side copy of one entity. */
export interface EntityState {
  status: string;
  lastEvent: string;
  key: bigint;
  version: number | null;
  merchantId: string | null;
  /** The owning source and its lowest key (docs/design.md#ownership); null: nobody owns it yet. */
  owner: Owner | null;
  fields: Record<string, FieldEntry>;
}

export interface MergeResult {
  state: EntityState;
  outcome: Outcome;
  /** Applied, but the new state cannot be reached from the previous one in the machine. */
  anomaly: boolean;
  /**
   * The event moved ownership to another source: the state returned is not final, the row
   * must be recomputed from all its events under the new owner ({@link recomputeRow}).
   */
  ownerMoved?: boolean;
}

/**
 * The apply rule (docs/design.md#apply-rule) for one event, as a pure function: the reference
 * the SQL statement is tested against, and what `rebuild` replays. `seen` holds the
 * `source/eventId` pairs already seen and is updated in place: a repeat is a `duplicate`, a
 * pair repeated with other content a `conflict` (docs/design.md#idempotency).
 */
export function mergeEvent(
  state: EntityState | undefined,
  event: PreparedEvent,
  seen: SeenIds,
  isReachable: (from: string, to: string) => boolean,
  fixedOwner?: Owner | null,
): MergeResult {
  const repeat = markSeen(seen, event);
  if (repeat !== undefined) return { state: state!, outcome: repeat, anomaly: false };
  // The owner once this event is seen, unless the caller knows the final one (a recomputation).
  const owner = fixedOwner !== undefined ? fixedOwner : ownerAfter(state?.owner ?? null, event);
  // (Without a row, only a recomputation's fixed owner can differ from the event's source.)
  if (!mayActFor(event, owner?.source ?? null)) return { state: state!, outcome: 'rejected', anomaly: false };
  // Rejected for its merchant or a duplicate by key, an event still counts for ownership.
  const held = state && (sameOwner(state.owner, owner) ? state : { ...state, owner });
  const moved = state ? movedFrom(state, owner) : {};
  if (held && held.merchantId !== null && event.merchantId !== null && held.merchantId !== event.merchantId) {
    return { state: held, outcome: 'rejected', anomaly: false, ...moved };
  }
  if (held && event.key === held.key) return { state: held, outcome: 'duplicate', anomaly: false, ...moved };
  const wins = !state || event.key > state.key;
  const fields: Record<string, FieldEntry> = { ...(state?.fields ?? {}) };
  for (const [name, value] of Object.entries(event.data ?? {})) {
    const current = fields[name];
    if (!current || event.key > current.key) {
      fields[name] = { value, key: event.key, event: event.type, version: event.version };
    }
  }
  const merchantId = state?.merchantId ?? event.merchantId;
  if (!wins) {
    return { state: { ...state!, fields, merchantId, owner }, outcome: 'stale', anomaly: false, ...moved };
  }
  return {
    state: {
      status: event.target,
      lastEvent: event.type,
      key: event.key,
      version: event.version,
      merchantId,
      owner,
      fields,
    },
    outcome: 'applied',
    anomaly: state !== undefined && !isReachable(state.status, event.target),
    ...moved,
  };
}

/**
 * Records the event's (source, eventId) in `seen`: `duplicate` or `conflict` when the pair was
 * seen before (with the same or other content), undefined when it is new or the event has no id.
 */
export function markSeen(seen: SeenIds, event: PreparedEvent): 'duplicate' | 'conflict' | undefined {
  if (event.eventId === null) return undefined;
  const idKey = `${event.source}\u0000${event.eventId}`;
  const hash = contentHash(event);
  const first = seen.get(idKey);
  if (first !== undefined) return first === hash ? 'duplicate' : 'conflict';
  seen.set(idKey, hash);
  return undefined;
}

const sameOwner = (a: Owner | null, b: Owner | null): boolean =>
  a === b || (a !== null && b !== null && a.source === b.source && a.key === b.key);

/** `{ ownerMoved: true }` when `owner` is another source than the state's (owned) one. */
function movedFrom(state: EntityState, owner: Owner | null): { ownerMoved?: true } {
  return state.owner !== null && owner !== null && owner.source !== state.owner.source
    ? { ownerMoved: true }
    : {};
}

/** Plain attributes of a state, as the API shows them. */
export function attributesOf(state: EntityState): Record<string, FieldValue> {
  return Object.fromEntries(Object.entries(state.fields).map(([k, f]) => [k, f.value]));
}

import type { FieldValue, PreparedEvent } from './registry.ts';

/** What happened to one event. */
export type Outcome = 'applied' | 'stale' | 'duplicate' | 'rejected';

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
  fields: Record<string, FieldEntry>;
}

export interface MergeResult {
  state: EntityState;
  outcome: Outcome;
  /** Applied, but the new state cannot be reached from the previous one in the machine. */
  anomaly: boolean;
}

/**
 * The apply rule of SPEC §3 for one event, as a pure function: the reference the SQL
 * statement is tested against, and what `rebuild` replays. `seen` holds the
 * `source/eventId` pairs already applied and is updated in place.
 */
export function mergeEvent(
  state: EntityState | undefined,
  event: PreparedEvent,
  seen: Set<string>,
  isReachable: (from: string, to: string) => boolean,
): MergeResult {
  const idKey = event.eventId === null ? null : `${event.source}\u0000${event.eventId}`;
  if (idKey !== null) {
    if (seen.has(idKey)) return { state: state!, outcome: 'duplicate', anomaly: false };
    seen.add(idKey);
  }
  if (
    state &&
    state.merchantId !== null &&
    event.merchantId !== null &&
    state.merchantId !== event.merchantId
  ) {
    return { state, outcome: 'rejected', anomaly: false };
  }

  if (state && event.key === state.key) return { state, outcome: 'duplicate', anomaly: false };
  const wins = !state || event.key > state.key;
  const fields: Record<string, FieldEntry> = { ...(state?.fields ?? {}) };
  for (const [name, value] of Object.entries(event.data ?? {})) {
    const current = fields[name];
    if (!current || event.key > current.key) {
      fields[name] = { value, key: event.key, event: event.type, version: event.version };
    }
  }
  const merchantId = state?.merchantId ?? event.merchantId;
  if (!wins) return { state: { ...state!, fields, merchantId }, outcome: 'stale', anomaly: false };
  return {
    state: {
      status: event.target,
      lastEvent: event.type,
      key: event.key,
      version: event.version,
      merchantId,
      fields,
    },
    outcome: 'applied',
    anomaly: state !== undefined && !isReachable(state.status, event.target),
  };
}

/** Plain attributes of a state, as the API shows them. */
export function attributesOf(state: EntityState): Record<string, FieldValue> {
  return Object.fromEntries(Object.entries(state.fields).map(([k, f]) => [k, f.value]));
}

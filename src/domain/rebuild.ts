import { markSeen, mergeEvent, type EntityState, type FieldEntry } from './merge.ts';
import { limitReason, type EntityLimits } from './field-limits.ts';
import { ownerAfter, type Owner } from './ownership.ts';
import type { PreparedEvent } from './registry.ts';

/** A row as stored or as recomputed: the merged state plus its anomaly count. */
export interface RowState extends EntityState {
  anomalies: number;
}

/** One column (or attribute) where the stored row and the recomputed one differ. */
export interface Drift {
  /** `status`, `lastEvent`, `key`, `version`, `merchantId`, `owner`, `anomalies` or `attributes.<name>`. */
  field: string;
  /** Absent values are undefined (an attribute only one side has). */
  stored: FieldEntry | string | number | bigint | null | undefined;
  recomputed: FieldEntry | string | number | bigint | null | undefined;
}

/**
 * The owner of an entity whose events are `events` (any order: the result does not depend on
 * it), starting from `pinned`, the owner of a row stored before ownership existed.
 */
export function ownerOf(events: readonly PreparedEvent[], pinned: Owner | null = null): Owner | null {
  let owner = pinned;
  for (const e of events) owner = ownerAfter(owner, e);
  return owner;
}

/**
 * Recomputes a row from its logged events with the apply rule ({@link mergeEvent}). `events`
 * are the entity's log in id order without those logged as conflicts: the log order is an
 * order the events really arrived in, so the result must equal the stored row. Conflicts are
 * left out because idempotency keys are global (a conflict may repeat an eventId first seen
 * on another entity) and a conflict changes nothing; duplicates stay, because one logged as
 * a duplicate by key may count once the owner has moved, and repeats of an eventId are
 * duplicates here again. `owner` is the entity's owner ({@link ownerOf} over the same events);
 * only the events that may act for it count.
 * @returns undefined when no event creates the row.
 */
export function recomputeRow(
  events: readonly PreparedEvent[],
  isReachable: (from: string, to: string) => boolean,
  owner: Owner | null = ownerOf(events),
  limits: FieldLimitReplay = {},
): RowState | undefined {
  let state: EntityState | undefined;
  let anomalies = 0;
  const seen = new Map<string, string>();
  for (const [i, event] of events.entries()) {
    if (limits.heldBack?.(i)) {
      // Rejected for good for the entity's field limits (docs/design.md#attribute-limits):
      // its eventId was claimed, so a repeat of it is a duplicate; nothing else of it counts.
      markSeen(seen, event);
      continue;
    }
    const r = mergeEvent(state, event, seen, isReachable, owner);
    if (r.outcome === 'duplicate' || r.outcome === 'conflict' || r.outcome === 'rejected') continue;
    const over = limits.entity && limitReason(state?.fields ?? {}, r.state.fields, limits.entity);
    if (over) {
      limits.onHeldBack?.(i, over);
      continue;
    }
    state = r.state;
    if (r.anomaly) anomalies++;
  }
  return state && { ...state, anomalies };
}

/** How {@link recomputeRow} treats the entity's field limits (docs/design.md#attribute-limits). */
export interface FieldLimitReplay {
  /** Events the store rejected for good for the limits: they count for ownership and idempotency only. */
  heldBack?: (index: number) => boolean;
  /**
   * Limits to hold the other events to, one by one in log order (a recomputation after the
   * owner moved, whose row no statement checked); unset, they are not checked again.
   */
  entity?: Readonly<EntityLimits>;
  /** Called for each event {@link FieldLimitReplay.entity} holds back, with the reason. */
  onHeldBack?: (index: number, reason: string) => void;
}

const sameEntry = (a: FieldEntry | undefined, b: FieldEntry | undefined): boolean =>
  a === b ||
  (a !== undefined &&
    b !== undefined &&
    a.value === b.value &&
    a.key === b.key &&
    a.event === b.event &&
    a.version === b.version);

/** The differences between a stored row and the recomputed one; empty when they agree. Pure. */
export function compareRows(stored: RowState, recomputed: RowState): Drift[] {
  const out: Drift[] = [];
  const scalar = ['status', 'lastEvent', 'key', 'version', 'merchantId', 'anomalies'] as const;
  for (const field of scalar) {
    if (stored[field] !== recomputed[field]) {
      out.push({ field, stored: stored[field], recomputed: recomputed[field] });
    }
  }
  const ownerText = (o: EntityState['owner']): string | null => (o === null ? null : `${o.source}@${o.key}`);
  if (ownerText(stored.owner) !== ownerText(recomputed.owner)) {
    out.push({ field: 'owner', stored: ownerText(stored.owner), recomputed: ownerText(recomputed.owner) });
  }
  const names = [...new Set([...Object.keys(stored.fields), ...Object.keys(recomputed.fields)])].sort();
  for (const name of names) {
    const s = stored.fields[name];
    const r = recomputed.fields[name];
    if (!sameEntry(s, r)) out.push({ field: `attributes.${name}`, stored: s, recomputed: r });
  }
  return out;
}

import type { PreparedEvent } from './registry.ts';

/**
 * Ownership by source (docs/design.md#ownership): an entity belongs to the source of its
 * lowest-keyed event, in the machine's order whatever the arrival order (of two equal keys,
 * the source whose name sorts first); admin events never own. Events of other sources are
 * rejected unless their key was granted the owner, or is an admin key.
 */

/** The source of events pushed with an admin key: may act for any owner, never owns. */
export const ADMIN_SOURCE = 'admin';

/** Who owns an entity: the source of its lowest-keyed event, and that key. */
export interface Owner {
  source: string;
  key: bigint;
}

/** Whether `a` comes before `b` in ownership order: lower key, or equal key and lower source. */
export function ownsBefore(a: Owner, b: Owner): boolean {
  return a.key < b.key || (a.key === b.key && a.source < b.source);
}

/** The owner once `event` is seen too (admin events change nothing). */
export function ownerAfter(owner: Owner | null, event: PreparedEvent): Owner | null {
  if (event.source === ADMIN_SOURCE) return owner;
  const candidate = { source: event.source, key: event.key };
  return owner === null || ownsBefore(candidate, owner) ? candidate : owner;
}

/** Whether `event` may change an entity owned by `owner` (null: nobody owns it yet). */
export function mayActFor(event: PreparedEvent, owner: string | null): boolean {
  return (
    owner === null ||
    event.source === owner ||
    event.source === ADMIN_SOURCE ||
    (event.mayWriteFor?.includes(owner) ?? false)
  );
}

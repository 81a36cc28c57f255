import { ID_PATTERN, PromosyncError } from '../domain/index.ts';

/**
 * A position in a machine's change feed: the transaction that last wrote a row, then the
 * row's entity id (docs/design.md#changes). `entityId` '' is the position before every row
 * of that transaction, which is what a horizon names: "every change below this xid".
 */
export interface ChangePosition {
  xid: bigint;
  entityId: string;
}

const MAX_XID8 = (1n << 64n) - 1n;

/** Orders two positions: negative when `a` comes first. */
export function comparePositions(a: ChangePosition, b: ChangePosition): number {
  if (a.xid !== b.xid) return a.xid < b.xid ? -1 : 1;
  return a.entityId === b.entityId ? 0 : a.entityId < b.entityId ? -1 : 1;
}

/** The opaque cursor clients see (`changeSeq`, `changesSince`, an SSE event id). */
export function encodeChangeCursor(p: ChangePosition): string {
  return Buffer.from(`${p.xid}.${p.entityId}`).toString('base64url');
}

/**
 * Reads a cursor this API handed out.
 * @throws PromosyncError invalid_request naming `path` when it is not one.
 */
export function decodeChangeCursor(cursor: string, path = 'changesSince'): ChangePosition {
  const text = /^[A-Za-z0-9_-]{1,200}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const m = /^(\d{1,20})\.(.*)$/s.exec(text);
  const xid = m ? BigInt(m[1]!) : -1n;
  if (!m || xid > MAX_XID8 || (m[2] !== '' && !ID_PATTERN.test(m[2]!))) {
    throw new PromosyncError('invalid_request', `${path} is not a cursor this API returned`, {
      problems: [{ path, message: 'pass a changeSeq, changesSince or nextChangesSince value unchanged' }],
    });
  }
  return { xid, entityId: m[2]! };
}

/** The cursor of a row's own position, from the text of its `change_xid`. */
export function encodeChangeCursorOf(xid: string, entityId: string): string {
  return encodeChangeCursor({ xid: BigInt(xid), entityId });
}

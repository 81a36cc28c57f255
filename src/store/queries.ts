import type { PrismaClient } from './db.ts';
import { ID_PATTERN, PromosyncError } from '../domain/index.ts';
import { encodeChangeCursor, decodeChangeCursor, type ChangePosition } from './change-cursor.ts';
import { readHorizon } from './changes.ts';
import { ENTITY_COLUMNS, toView, type EntityRow, type EntityView, type ReadScope } from './entity-view.ts';

export type { EntityView, ReadScope };

export interface EventView {
  id: string;
  type: string;
  eventId: string | null;
  version: number | null;
  source: string;
  merchantId: string | null;
  data: unknown;
  occurredAt: string | null;
  receivedAt: string;
  outcome: string;
  anomaly: boolean;
}

/** One entity, or null when it does not exist or the scope may not see it (the same to the caller). */
export async function getEntity(
  prisma: PrismaClient,
  machine: string,
  entityId: string,
  scope: ReadScope,
): Promise<EntityView | null> {
  const [row] = await prisma.$queryRawUnsafe<EntityRow[]>(
    `SELECT ${ENTITY_COLUMNS} FROM entity e WHERE e.machine = $1 AND e.entity_id = $2`,
    machine,
    entityId,
  );
  if (!row || (scope.merchantId !== null && row.merchantId !== scope.merchantId)) return null;
  return toView(row);
}

export interface ListQuery {
  status?: string;
  updatedSince?: Date;
  limit: number;
  cursor?: string;
}

/** A page cursor: where the page ended, and the change cursor of the listing's first page. */
interface ListCursor {
  at: Date;
  id: string;
  start: ChangePosition | undefined;
}

function encodeCursor(at: Date, id: string, start: ChangePosition): string {
  return Buffer.from(JSON.stringify([at.toISOString(), id, encodeChangeCursor(start)])).toString('base64url');
}

function decodeCursor(cursor: string): ListCursor {
  try {
    const [at, id, start] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [
      unknown,
      unknown,
      unknown,
    ];
    const date = new Date(String(at));
    const year = date.getUTCFullYear();
    if (typeof id !== 'string' || !ID_PATTERN.test(id) || !(year >= 1 && year <= 9999)) {
      throw new Error('bad cursor');
    }
    // Cursors of earlier versions carry no start: the page's own horizon then stands in.
    return { at: date, id, start: start === undefined ? undefined : decodeChangeCursor(String(start)) };
  } catch {
    throw new PromosyncError('invalid_request', 'cursor is not one this API returned', {
      problems: [{ path: 'cursor', message: 'pass the nextCursor of the previous page unchanged' }],
    });
  }
}

/**
 * A page of entities ordered by (updatedAt, id), oldest change first. `updatedSince` is
 * approximate for following changes (a change can commit after a later one: see
 * docs/design.md#changes); `changesSince` is where to follow the listing from exactly: the
 * feed horizon read before the listing's first page, carried by `nextCursor` to every later
 * page, so every change the listing could have missed lies after it.
 */
export async function listEntities(
  prisma: PrismaClient,
  machine: string,
  scope: ReadScope,
  q: ListQuery,
): Promise<{ items: EntityView[]; nextCursor: string | null; changesSince: string }> {
  const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
  // Before the rows are read: every change this snapshot misses has a position at or above it.
  const start = after?.start ?? (await readHorizon(prisma));
  const where = ['e.machine = $1'];
  const values: unknown[] = [machine];
  const param = (v: unknown): string => `$${values.push(v)}`;
  if (scope.merchantId !== null) where.push(`e.merchant_id = ${param(scope.merchantId)}`);
  if (q.status !== undefined) where.push(`e.status = ${param(q.status)}`);
  if (q.updatedSince !== undefined)
    where.push(`e.updated_at >= ${param(q.updatedSince.toISOString())}::timestamptz`);
  if (after)
    where.push(
      `(e.updated_at, e.entity_id) > (${param(after.at.toISOString())}::timestamptz, ${param(after.id)})`,
    );
  const rows = await prisma.$queryRawUnsafe<EntityRow[]>(
    `SELECT ${ENTITY_COLUMNS} FROM entity e WHERE ${where.join(' AND ')}
     ORDER BY e.updated_at, e.entity_id LIMIT ${param(q.limit + 1)}::int`,
    ...values,
  );
  const more = rows.length > q.limit;
  const page = more ? rows.slice(0, q.limit) : rows;
  const last = page.at(-1);
  return {
    items: page.map(toView),
    nextCursor: more && last ? encodeCursor(new Date(last.updatedAt), last.entityId, start) : null,
    changesSince: encodeChangeCursor(start),
  };
}

/** The event log of one entity, oldest first; null when the scope may not see the entity. */
export async function getEntityEvents(
  prisma: PrismaClient,
  machine: string,
  entityId: string,
  scope: ReadScope,
  page: { limit: number; after?: bigint },
): Promise<{ items: EventView[]; nextCursor: string | null } | null> {
  if (scope.merchantId !== null) {
    const owner = await prisma.entity.findUnique({
      where: { machine_entityId: { machine, entityId } },
      select: { merchantId: true },
    });
    if (!owner || owner.merchantId !== scope.merchantId) return null;
  }
  const rows = await prisma.eventLog.findMany({
    where: { machine, entityId, ...(page.after !== undefined ? { id: { gt: page.after } } : {}) },
    orderBy: { id: 'asc' },
    take: page.limit + 1,
  });
  if (rows.length === 0) {
    const exists = await prisma.entity.count({ where: { machine, entityId } });
    if (exists === 0) return null;
  }
  const more = rows.length > page.limit;
  const kept = more ? rows.slice(0, page.limit) : rows;
  const farOff = await farOffTimes(
    prisma,
    kept.filter((r) => r.occurredAt !== null && Number.isNaN(r.occurredAt.getTime())).map((r) => r.id),
  );
  const items = kept.map((r) => ({
    id: r.id.toString(),
    type: r.type,
    eventId: r.eventId,
    version: r.version === null ? null : Number(r.version),
    source: r.source,
    merchantId: r.merchantId,
    data: r.data,
    occurredAt: r.occurredAt === null ? null : (farOff.get(r.id) ?? isoOrNull(r.occurredAt)),
    receivedAt: r.receivedAt.toISOString(),
    outcome: r.outcome,
    anomaly: r.anomaly,
  }));
  return { items, nextCursor: more ? items.at(-1)!.id : null };
}

const isoOrNull = (d: Date): string | null => (Number.isNaN(d.getTime()) ? null : d.toISOString());

/**
 * Timestamps the driver cannot turn into a Date (years past 9999 or before year 1, which
 * older versions let in through occurredAt), read as epoch milliseconds instead, so that
 * such a row still reads. Beyond what a JavaScript Date holds (±275,760 years) they are null.
 */
async function farOffTimes(prisma: PrismaClient, ids: bigint[]): Promise<Map<bigint, string | null>> {
  if (ids.length === 0) return new Map();
  const rows = await prisma.$queryRaw<Array<{ id: bigint; ms: number | null }>>`
    SELECT id, (extract(epoch FROM occurred_at) * 1000)::float8 AS ms FROM event_log WHERE id = ANY(${ids})`;
  return new Map(rows.map((r) => [r.id, r.ms === null ? null : isoOrNull(new Date(r.ms))]));
}

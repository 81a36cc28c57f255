import type { PrismaClient } from './db.ts';
import type { FieldValue } from '../domain/index.ts';
import { ID_PATTERN, PromosyncError, storedValues, type StoredField } from '../domain/index.ts';

/** An entity as the API returns it. */
export interface EntityView {
  id: string;
  machine: string;
  status: string;
  lastEvent: string;
  version: number | null;
  merchantId: string | null;
  attributes: Record<string, FieldValue>;
  anomalies: number;
  createdAt: string;
  updatedAt: string;
}

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

/** Who may see what: a merchant only its own entities. */
export interface ReadScope {
  merchantId: string | null;
}

interface EntityRow {
  machine: string;
  entityId: string;
  status: string;
  lastEvent: string;
  version: bigint | null;
  merchantId: string | null;
  fields: unknown;
  anomalies: number;
  createdAt: Date;
  updatedAt: Date;
}

function toView(r: EntityRow): EntityView {
  return {
    id: r.entityId,
    machine: r.machine,
    status: r.status,
    lastEvent: r.lastEvent,
    version: r.version === null ? null : Number(r.version),
    merchantId: r.merchantId,
    attributes: storedValues((r.fields ?? {}) as Record<string, StoredField>),
    anomalies: r.anomalies,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}

/** One entity, or null when it does not exist or the scope may not see it (the same to the caller). */
export async function getEntity(
  prisma: PrismaClient,
  machine: string,
  entityId: string,
  scope: ReadScope,
): Promise<EntityView | null> {
  const row = await prisma.entity.findUnique({ where: { machine_entityId: { machine, entityId } } });
  if (!row || (scope.merchantId !== null && row.merchantId !== scope.merchantId)) return null;
  return toView(row);
}

export interface ListQuery {
  status?: string;
  updatedSince?: Date;
  limit: number;
  cursor?: string;
}

function encodeCursor(at: Date, id: string): string {
  return Buffer.from(JSON.stringify([at.toISOString(), id])).toString('base64url');
}

function decodeCursor(cursor: string): { at: Date; id: string } {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [unknown, unknown];
    const date = new Date(String(at));
    const year = date.getUTCFullYear();
    if (typeof id !== 'string' || !ID_PATTERN.test(id) || !(year >= 1 && year <= 9999)) {
      throw new Error('bad cursor');
    }
    return { at: date, id };
  } catch {
    throw new PromosyncError('invalid_request', 'cursor is not one this API returned', {
      problems: [{ path: 'cursor', message: 'pass the nextCursor of the previous page unchanged' }],
    });
  }
}

/**
 * A page of entities ordered by (updatedAt, id), oldest change first, so a client can
 * follow changes with `updatedSince` and `nextCursor`.
 */
export async function listEntities(
  prisma: PrismaClient,
  machine: string,
  scope: ReadScope,
  q: ListQuery,
): Promise<{ items: EntityView[]; nextCursor: string | null }> {
  const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
  const rows = await prisma.entity.findMany({
    where: {
      machine,
      ...(scope.merchantId !== null ? { merchantId: scope.merchantId } : {}),
      ...(q.status !== undefined ? { status: q.status } : {}),
      ...(q.updatedSince !== undefined ? { updatedAt: { gte: q.updatedSince } } : {}),
      ...(after
        ? { OR: [{ updatedAt: { gt: after.at } }, { updatedAt: after.at, entityId: { gt: after.id } }] }
        : {}),
    },
    orderBy: [{ updatedAt: 'asc' }, { entityId: 'asc' }],
    take: q.limit + 1,
  });
  const more = rows.length > q.limit;
  const page = more ? rows.slice(0, q.limit) : rows;
  const last = page.at(-1);
  return {
    items: page.map(toView),
    nextCursor: more && last ? encodeCursor(last.updatedAt, last.entityId) : null,
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

import type { PoolClient } from 'pg';
import { PromosyncError } from '../domain/index.ts';
import { comparePositions, type ChangePosition } from './change-cursor.ts';
import type { PrismaClient } from './db.ts';
import { ENTITY_COLUMNS, toView, type EntityRow, type EntityView, type ReadScope } from './entity-view.ts';

/** The NOTIFY channel the apply path signals after a batch that changed rows. */
export const CHANGES_CHANNEL = 'promosync_changes';

/** The error of a cursor below what the feed can replay. */
export function cursorExpired(): PromosyncError {
  return new PromosyncError(
    'cursor_expired',
    'this cursor is older than the changes kept (entities were purged since); list the collection ' +
      'again without a cursor, replace your copy with it, then follow changes from its changesSince',
  );
}

/** Runs SQL through Prisma: the API's only database handle. */
function sql<T>(prisma: PrismaClient, text: string, values: unknown[]): Promise<T[]> {
  return prisma.$queryRawUnsafe<T[]>(text, ...values);
}

/**
 * The feed horizon: every transaction below it has finished, and every change not yet
 * visible will get a position at or above it. A follower may always resume from here.
 */
export async function readHorizon(prisma: PrismaClient): Promise<ChangePosition> {
  const [row] = await sql<{ h: string }>(
    prisma,
    'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS h',
    [],
  );
  return { xid: BigInt(row!.h), entityId: '' };
}

/** One page of a change feed. */
export interface ChangePage {
  /** Changed entities after the cursor, in position order, each with its `changeSeq`. */
  items: EntityView[];
  /** Where to continue: the last item's position after a full page, else the horizon. */
  next: ChangePosition;
  /** Whether the page was full, so more changes may follow at once. */
  full: boolean;
}

interface FeedRow extends Partial<EntityRow> {
  horizon: string;
  purged_xid: string | null;
  purged_id: string | null;
}

/**
 * Entities of `machine` changed after `after`, oldest position first: only rows written by
 * transactions below the snapshot horizon, so nothing that commits later can sort before
 * what this returns (docs/design.md#changes). One statement, so the rows, the horizon and
 * the purge mark come from one snapshot.
 * @throws PromosyncError cursor_expired when `after` lies below rows `promosync purge` removed.
 */
export async function readChanges(
  prisma: PrismaClient,
  machine: string,
  scope: ReadScope,
  after: ChangePosition,
  limit: number,
): Promise<ChangePage> {
  const merchant = scope.merchantId === null ? '' : 'AND e.merchant_id = $5';
  const rows = await sql<FeedRow>(
    prisma,
    `SELECT h.horizon::text AS horizon, p.xid::text AS purged_xid, p.entity_id AS purged_id, e.*
     FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) h
     LEFT JOIN feed_purge p ON p.machine = $1
     LEFT JOIN LATERAL (
       SELECT ${ENTITY_COLUMNS} FROM entity e
       WHERE e.machine = $1 ${merchant}
         AND (e.change_xid, e.entity_id) > ($2::text::xid8, $3::text)
         AND e.change_xid < h.horizon
       ORDER BY e.change_xid, e.entity_id
       LIMIT $4::int
     ) e ON true`,
    [
      machine,
      after.xid.toString(),
      after.entityId,
      limit,
      ...(scope.merchantId === null ? [] : [scope.merchantId]),
    ],
  );
  const first = rows[0]!;
  if (first.purged_xid !== null) {
    const purged = { xid: BigInt(first.purged_xid), entityId: first.purged_id! };
    if (comparePositions(after, purged) < 0) throw cursorExpired();
  }
  const items = rows
    .filter((r) => r.entityId !== null && r.entityId !== undefined)
    .map((r) => toView(r as EntityRow));
  const full = items.length === limit;
  const last = rows.at(-1)!;
  const next = full
    ? { xid: BigInt(last.changeXid!), entityId: last.entityId! }
    : { xid: BigInt(first.horizon), entityId: '' };
  // The horizon never goes back, but a cursor can be ahead of it (an entity's own changeSeq).
  return { items, next: comparePositions(next, after) < 0 ? after : next, full };
}

/**
 * Records, in the purge's transaction, the newest position among rows it removed from
 * `machine`: a follower whose cursor is below it may have missed one of them, and is told
 * to list again (docs/design.md#changes). `removed` selects the removed rows' `change_xid`
 * and `entity_id`.
 */
export async function recordPurge(
  client: PoolClient,
  machine: string,
  removedXid: string,
  removedId: string,
): Promise<void> {
  await client.query(
    `INSERT INTO feed_purge (machine, xid, entity_id) VALUES ($1, $2::text::xid8, $3)
     ON CONFLICT (machine) DO UPDATE SET xid = EXCLUDED.xid, entity_id = EXCLUDED.entity_id
     WHERE (feed_purge.xid, feed_purge.entity_id) < (EXCLUDED.xid, EXCLUDED.entity_id)`,
    [machine, removedXid, removedId],
  );
}

/**
 * How far the horizon lags: the age in seconds of the oldest transaction that holds it back
 * (0 when none runs). A long transaction anywhere on the server delays every feed; nothing is lost.
 */
export async function readHorizonLag(prisma: PrismaClient): Promise<number> {
  const [row] = await sql<{ s: number | null }>(
    prisma,
    `SELECT extract(epoch FROM now() - min(xact_start))::float8 AS s
     FROM pg_stat_activity WHERE backend_xid IS NOT NULL`,
    [],
  );
  return Math.max(0, row?.s ?? 0);
}

import type { Pool } from 'pg';
import type {
  AdmitResult,
  LimitName,
  Limits,
  LimitsPatch,
  ReserveRequest,
  Reservation,
  ReservationStatus,
} from '../domain/index.ts';

// The capacity statements (docs/design.md#capacity). Every change of a promotion's "used" units
// happens inside one SQL function call that first locks its capacity row, so the limits hold
// whatever number of API processes admit at once; the functions live in the capacity migration.

/** Rows over which a promotion's confirmed units are spread. */
const CONFIRM_SHARDS = 8;

interface ReservationRow {
  promotion_id: string;
  order_id: string;
  customer_id: string | null;
  units: string;
  status: string;
  created_at: Date;
  expires_at: Date;
  resolved_at: Date | null;
  remaining_total: string | null;
  remaining_per_customer: string | null;
  remaining_window: string | null;
}

const num = (v: string | null): number | null => (v === null ? null : Number(v));

function toReservation(r: ReservationRow): Reservation {
  return {
    promotionId: r.promotion_id,
    orderId: r.order_id,
    customerId: r.customer_id,
    units: Number(r.units),
    status: r.status as ReservationStatus,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    resolvedAt: r.resolved_at,
    remaining: {
      total: num(r.remaining_total),
      perCustomer: num(r.remaining_per_customer),
      perWindow: num(r.remaining_window),
    },
  };
}

interface AdmitRow {
  o_order_id: string;
  o_outcome: string;
  o_limit: string | null;
  o_customer_id: string | null;
  o_units: string;
  o_status: string | null;
  o_created_at: Date | null;
  o_expires_at: Date | null;
  o_remaining_total: string | null;
  o_remaining_per_customer: string | null;
  o_remaining_window: string | null;
  o_expired: string;
}

/** What one admission statement did: one result per request, and the holds it expired on the way. */
export interface AdmitBatch {
  results: AdmitResult[];
  expired: number;
}

/** The requests of one promotion in a statement that admits several. */
export interface PromotionRequests {
  promotionId: string;
  requests: ReserveRequest[];
}

/**
 * Admits reservation requests for several promotions with one statement and one commit
 * (`promosync_capacity_admit_all`): the capacity rows are locked in id order, each promotion's
 * requests are decided in the order given, each promotion as if it were alone. Returns one
 * {@link AdmitBatch} per promotion, in the order given.
 */
export async function admitReservationsMany(pool: Pool, groups: PromotionRequests[]): Promise<AdmitBatch[]> {
  const promotions: string[] = [];
  const orders: string[] = [];
  const customers: Array<string | null> = [];
  const units: number[] = [];
  const holds: number[] = [];
  for (const g of groups) {
    for (const r of g.requests) {
      promotions.push(g.promotionId);
      orders.push(r.orderId);
      customers.push(r.customerId);
      units.push(r.units);
      holds.push(r.holdSeconds);
    }
  }
  const { rows } = await pool.query<AdmitRow>(
    'SELECT * FROM promosync_capacity_admit_all($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[])',
    [promotions, orders, customers, units, holds],
  );
  if (rows.length !== orders.length)
    throw new Error(`admission answered ${rows.length} of ${orders.length} requests`);
  let next = 0;
  return groups.map((g) => {
    const batch = toAdmitBatch(g.promotionId, rows.slice(next, next + g.requests.length));
    next += g.requests.length;
    return batch;
  });
}

function toAdmitBatch(promotionId: string, rows: AdmitRow[]): AdmitBatch {
  const results = rows.map((row): AdmitResult => {
    switch (row.o_outcome) {
      case 'granted':
      case 'replay':
      case 'conflict':
        return {
          kind: row.o_outcome,
          reservation: toReservation({
            promotion_id: promotionId,
            order_id: row.o_order_id,
            customer_id: row.o_customer_id,
            units: row.o_units,
            status: row.o_status!,
            created_at: row.o_created_at!,
            expires_at: row.o_expires_at!,
            resolved_at: null,
            remaining_total: row.o_remaining_total,
            remaining_per_customer: row.o_remaining_per_customer,
            remaining_window: row.o_remaining_window,
          }),
        };
      case 'not_active':
      case 'customer_required':
        return { kind: row.o_outcome };
      case 'exhausted':
        return { kind: 'exhausted', limit: row.o_limit as LimitName };
      default:
        throw new Error(`unknown admission outcome ${row.o_outcome}`);
    }
  });
  return { results, expired: rows.length > 0 ? Number(rows[0]!.o_expired) : 0 };
}

/** Sets or removes limits (absent fields are kept); creates the promotion's capacity row if needed. */
export async function setLimits(pool: Pool, promotionId: string, patch: LimitsPatch): Promise<void> {
  const has = (k: keyof LimitsPatch): boolean => patch[k] !== undefined;
  await pool.query(
    `INSERT INTO capacity (promotion_id, total_max, per_customer_max, window_seconds, window_max)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (promotion_id) DO UPDATE SET
       total_max = CASE WHEN $6 THEN EXCLUDED.total_max ELSE capacity.total_max END,
       per_customer_max = CASE WHEN $7 THEN EXCLUDED.per_customer_max ELSE capacity.per_customer_max END,
       window_seconds = CASE WHEN $8 THEN EXCLUDED.window_seconds ELSE capacity.window_seconds END,
       window_max = CASE WHEN $8 THEN EXCLUDED.window_max ELSE capacity.window_max END,
       updated_at = now()`,
    [
      promotionId,
      patch.total ?? null,
      patch.perCustomer ?? null,
      patch.perWindow?.seconds ?? null,
      patch.perWindow?.max ?? null,
      has('total'),
      has('perCustomer'),
      has('perWindow'),
    ],
  );
}

/** One reservation as it is now, or null. */
export async function getReservation(
  pool: Pool,
  promotionId: string,
  orderId: string,
): Promise<Reservation | null> {
  const { rows } = await pool.query<ReservationRow>(
    'SELECT * FROM reservation WHERE promotion_id = $1 AND order_id = $2',
    [promotionId, orderId],
  );
  return rows[0] ? toReservation(rows[0]) : null;
}

/**
 * Confirms a live hold: one statement that moves its units to the confirmed count. Returns the
 * reservation after the call (confirmed, or what stopped it), null when there is none.
 */
export async function confirmReservation(
  pool: Pool,
  promotionId: string,
  orderId: string,
): Promise<Reservation | null> {
  const shard = Math.floor(Math.random() * CONFIRM_SHARDS);
  const { rows } = await pool.query<ReservationRow>(
    `WITH c AS (
       UPDATE reservation SET status = 'confirmed', resolved_at = clock_timestamp()
        WHERE promotion_id = $1 AND order_id = $2 AND status = 'held' AND expires_at > now()
       RETURNING *),
     s AS (
       INSERT INTO capacity_confirmed (promotion_id, shard, units)
       SELECT promotion_id, $3, units FROM c
       ON CONFLICT (promotion_id, shard) DO UPDATE SET units = capacity_confirmed.units + EXCLUDED.units)
     SELECT * FROM c`,
    [promotionId, orderId, shard],
  );
  if (rows[0]) return toReservation(rows[0]);
  return getReservation(pool, promotionId, orderId);
}

/** Releases a hold (its units return at once). Returns the reservation after the call, or null. */
export async function releaseReservation(
  pool: Pool,
  promotionId: string,
  orderId: string,
): Promise<Reservation | null> {
  const { rows } = await pool.query<ReservationRow>('SELECT * FROM promosync_capacity_release($1, $2)', [
    promotionId,
    orderId,
  ]);
  return rows[0] ? toReservation(rows[0]) : null;
}

/**
 * Expires due holds of up to `limit` promotions (skipping promotions another transaction is
 * admitting on: it expires them itself). Resolves with the promotions swept and the holds expired.
 */
export async function sweepExpiredHolds(
  pool: Pool,
  limit = 100,
): Promise<{ promotions: number; holds: number }> {
  const { rows } = await pool.query<{ promotions: string; holds: string }>(
    'SELECT count(*) AS promotions, coalesce(sum(o_holds), 0) AS holds FROM promosync_capacity_sweep($1)',
    [limit],
  );
  return { promotions: Number(rows[0]?.promotions ?? 0), holds: Number(rows[0]?.holds ?? 0) };
}

/** Use of one limit: units confirmed, units in live holds, and what is left (never negative). */
export interface LimitUse {
  max: number;
  confirmed: number;
  held: number;
  remaining: number;
}

/** A promotion's limits and their use, as the API shows it. */
export interface CapacitySummary {
  promotionId: string;
  total: LimitUse | null;
  /** Figures for the customer asked about; without one, only `max`. */
  perCustomer: (Omit<LimitUse, 'confirmed' | 'held' | 'remaining'> & Partial<LimitUse>) | null;
  perWindow: (LimitUse & { seconds: number }) | null;
}

/** The promotion's limits, or null when it has no capacity row. */
export async function getLimits(pool: Pool, promotionId: string): Promise<Limits | null> {
  const { rows } = await pool.query<{
    total_max: string | null;
    per_customer_max: string | null;
    window_seconds: number | null;
    window_max: string | null;
  }>('SELECT total_max, per_customer_max, window_seconds, window_max FROM capacity WHERE promotion_id = $1', [
    promotionId,
  ]);
  const r = rows[0];
  if (!r) return null;
  return {
    total: num(r.total_max),
    perCustomer: num(r.per_customer_max),
    perWindow: r.window_max === null ? null : { seconds: r.window_seconds!, max: Number(r.window_max) },
  };
}

/**
 * The capacity summary of a promotion, exact at the moment of the read: holds past their
 * expiry count as released even before the sweeper marked them. Null when the promotion has
 * neither limits nor reservations.
 */
export async function capacitySummary(
  pool: Pool,
  promotionId: string,
  customerId?: string,
): Promise<CapacitySummary | null> {
  const { rows } = await pool.query<{
    total_max: string | null;
    per_customer_max: string | null;
    window_seconds: number | null;
    window_max: string | null;
    confirmed: string;
    held: string;
    win_confirmed: string;
    win_held: string;
    cust_confirmed: string;
    cust_held: string;
  }>(
    `SELECT c.total_max, c.per_customer_max, c.window_seconds, c.window_max,
       (SELECT coalesce(sum(units), 0) FROM capacity_confirmed WHERE promotion_id = c.promotion_id) AS confirmed,
       (SELECT coalesce(sum(units), 0) FROM reservation
         WHERE promotion_id = c.promotion_id AND status = 'held' AND expires_at > now()) AS held,
       (SELECT coalesce(sum(units), 0) FROM reservation
         WHERE promotion_id = c.promotion_id AND status = 'confirmed' AND c.window_seconds IS NOT NULL
           AND created_at > now() - make_interval(secs => c.window_seconds)) AS win_confirmed,
       (SELECT coalesce(sum(units), 0) FROM reservation
         WHERE promotion_id = c.promotion_id AND status = 'held' AND expires_at > now()
           AND c.window_seconds IS NOT NULL
           AND created_at > now() - make_interval(secs => c.window_seconds)) AS win_held,
       (SELECT coalesce(sum(units), 0) FROM reservation
         WHERE promotion_id = c.promotion_id AND customer_id = $2 AND status = 'confirmed') AS cust_confirmed,
       (SELECT coalesce(sum(units), 0) FROM reservation
         WHERE promotion_id = c.promotion_id AND customer_id = $2 AND status = 'held'
           AND expires_at > now()) AS cust_held
     FROM capacity c WHERE c.promotion_id = $1`,
    [promotionId, customerId ?? null],
  );
  const r = rows[0];
  if (!r) return null;
  const use = (max: number, confirmed: number, held: number): LimitUse => ({
    max,
    confirmed,
    held,
    remaining: Math.max(max - confirmed - held, 0),
  });
  return {
    promotionId,
    total: r.total_max === null ? null : use(Number(r.total_max), Number(r.confirmed), Number(r.held)),
    perCustomer:
      r.per_customer_max === null
        ? null
        : customerId === undefined
          ? { max: Number(r.per_customer_max) }
          : use(Number(r.per_customer_max), Number(r.cust_confirmed), Number(r.cust_held)),
    perWindow:
      r.window_max === null
        ? null
        : {
            seconds: r.window_seconds!,
            ...use(Number(r.window_max), Number(r.win_confirmed), Number(r.win_held)),
          },
  };
}

/** A broken capacity rule, as {@link checkCapacityInvariants} reports it. */
export interface CapacityViolation {
  promotionId: string;
  rule: string;
  detail: string;
}

/**
 * Checks every promotion's counters against its reservation rows and its limits: the units
 * counted as used are exactly the live holds and confirmed reservations, confirmed units
 * match, and no limit is exceeded (total, per customer, and every sliding window ending at a
 * live reservation's creation). Limits lowered below their use are the caller's to exclude.
 */
export async function checkCapacityInvariants(pool: Pool): Promise<CapacityViolation[]> {
  const { rows } = await pool.query<CapacityViolation>(
    `WITH live AS (
       SELECT * FROM reservation WHERE status IN ('held', 'confirmed')),
     per AS (
       SELECT c.promotion_id, c.used, c.total_max,
         (SELECT coalesce(sum(units), 0) FROM live l WHERE l.promotion_id = c.promotion_id) AS live_units,
         (SELECT coalesce(sum(units), 0) FROM live l
           WHERE l.promotion_id = c.promotion_id AND (l.status = 'confirmed' OR l.expires_at > now())) AS unexpired,
         (SELECT coalesce(sum(units), 0) FROM reservation r
           WHERE r.promotion_id = c.promotion_id AND r.status = 'confirmed') AS confirmed_rows,
         (SELECT coalesce(sum(units), 0) FROM capacity_confirmed s
           WHERE s.promotion_id = c.promotion_id) AS confirmed_count
       FROM capacity c)
     SELECT promotion_id AS "promotionId", 'used counts live reservations' AS rule,
            format('used %s, live reservations %s', used, live_units) AS detail
       FROM per WHERE used <> live_units
     UNION ALL
     SELECT promotion_id, 'confirmed count', format('counted %s, rows %s', confirmed_count, confirmed_rows)
       FROM per WHERE confirmed_count <> confirmed_rows
     UNION ALL
     SELECT promotion_id, 'total', format('%s units live, max %s', live_units, total_max)
       FROM per WHERE total_max IS NOT NULL AND live_units > total_max
     UNION ALL
     SELECT promotion_id, 'no negative use', format('used %s', used) FROM per WHERE used < 0 OR unexpired < 0
     UNION ALL
     SELECT l.promotion_id, 'perCustomer', format('customer %s: %s units, max %s', l.customer_id, sum(l.units), c.per_customer_max)
       FROM live l JOIN capacity c USING (promotion_id)
      WHERE c.per_customer_max IS NOT NULL AND l.customer_id IS NOT NULL
      GROUP BY l.promotion_id, l.customer_id, c.per_customer_max
     HAVING sum(l.units) > c.per_customer_max
     UNION ALL
     SELECT a.promotion_id, 'perWindow', format('%s units in the window ending %s, max %s', sum(b.units), a.created_at, c.window_max)
       FROM (SELECT DISTINCT promotion_id, created_at FROM live) a
       JOIN capacity c USING (promotion_id)
       JOIN live b ON b.promotion_id = a.promotion_id AND b.created_at <= a.created_at
                  AND b.created_at > a.created_at - make_interval(secs => c.window_seconds)
      WHERE c.window_max IS NOT NULL
      GROUP BY a.promotion_id, a.created_at, c.window_max
     HAVING sum(b.units) > c.window_max`,
  );
  return rows;
}

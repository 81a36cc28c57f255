import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, testPool } from '../helpers/db.ts';
import { admitReservationsMany, setLimits } from '../../src/store/capacity.ts';

/**
 * The admission function caches its plans per session. A session that planned them while the
 * tables were small must still look a batch's reservations and statuses up by key once the
 * tables are large: reading whole tables made every call slower as the tables grew.
 */
describe('admission plans', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let admin: pg.Pool;
  // One connection: every call runs in the session whose plans were made on small tables.
  let session: pg.Pool;

  beforeAll(async () => {
    db = await freshDatabase();
    admin = testPool(db.url, 1);
    session = testPool(db.url, 1);
  });
  afterAll(async () => {
    await session?.end();
    await admin?.end();
    await db?.drop();
  });

  const activate = (ids: string) =>
    admin.query(
      `INSERT INTO entity (machine, entity_id, status, last_event, key, merchant_id)
       SELECT 'promotion', id, 'ACTIVATED', 'activate', 1, 'm-1' FROM (${ids}) AS t(id)`,
    );

  /**
   * Rows read from each table by sequential scans and entries read from its indexes, as the
   * statistics have them (an index scan that checks a column of its key entry by entry reads
   * many entries and fetches few rows, so rows fetched alone would not show it).
   */
  async function reads(): Promise<Record<string, { seq: number; idx: number }>> {
    // The session's counters reach the statistics when it is next idle.
    await session.query('SELECT pg_stat_force_next_flush()');
    await session.query('SELECT 1');
    await admin.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await admin.query<{ relname: string; seq: string; idx: string }>(
      `SELECT t.relname, coalesce(t.seq_tup_read, 0) AS seq,
              (SELECT coalesce(sum(i.idx_tup_read), 0) FROM pg_stat_user_indexes i WHERE i.relid = t.relid) AS idx
       FROM pg_stat_user_tables t WHERE t.relname IN ('reservation', 'entity')`,
    );
    return Object.fromEntries(rows.map((r) => [r.relname, { seq: Number(r.seq), idx: Number(r.idx) }]));
  }

  it('stay lookups by key after the tables grow', { timeout: 120_000 }, async () => {
    await activate(`VALUES ('plan-a'), ('plan-b')`);
    await setLimits(admin, 'plan-a', { total: 1_000_000 });
    const call = (tag: string, round: number) =>
      admitReservationsMany(
        session,
        ['plan-a', 'plan-b'].map((promotionId) => ({
          promotionId,
          requests: Array.from({ length: 5 }, (_, i) => ({
            orderId: `${tag}-${round}-${i}`,
            customerId: `c-${i}`,
            units: 1,
            holdSeconds: 300,
          })),
        })),
      );
    // Enough calls on small tables for the session to keep generic plans.
    for (let round = 0; round < 10; round++) {
      const batches = await call('small', round);
      expect(batches.flatMap((b) => b.results.map((r) => r.kind))).toEqual(Array(10).fill('granted'));
    }
    // The tables grow: many reservations of another promotion, many other promotions.
    const bulk = 50_000;
    await activate(`SELECT 'bulk-' || g FROM generate_series(1, ${bulk}) AS g`);
    await admin.query(
      `INSERT INTO reservation (promotion_id, order_id, customer_id, units, status, created_at, expires_at)
       SELECT 'bulk-1', 'o-' || g, 'c-' || (g % 100), 1, 'confirmed', now(), now() + interval '1 hour'
       FROM generate_series(1, ${bulk}) AS g`,
    );
    const before = await reads();
    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      const batches = await call('large', round);
      expect(batches.flatMap((b) => b.results.map((r) => r.kind))).toEqual(Array(10).fill('granted'));
    }
    const after = await reads();
    // A scan of either table would read all of its rows in each call; lookups read a few.
    const read = (t: string) => after[t]!.seq - before[t]!.seq + after[t]!.idx - before[t]!.idx;
    expect(read('reservation')).toBeLessThan(bulk / 10);
    expect(read('entity')).toBeLessThan(bulk / 10);
  });
});

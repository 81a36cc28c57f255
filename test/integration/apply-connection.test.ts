import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import pino from 'pino';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../../src/domain/index.ts';
import { Applier, isTransient, openDatabase, withTransaction, type Database } from '../../src/store/index.ts';
import { ADMIN_URL, freshDatabase } from '../helpers/db.ts';

describe('a Postgres connection dropped in the middle of a statement', () => {
  let fdb: Awaited<ReturnType<typeof freshDatabase>>;
  let db: Database;
  const registry = MachineRegistry.from(machines);

  beforeAll(async () => {
    fdb = await freshDatabase();
    db = openDatabase(fdb.url, 2);
  });
  afterAll(async () => {
    await db?.close();
    await fdb?.drop();
  });

  /** Terminates this database's active backends once one is busy. */
  async function killWhenActive(): Promise<number> {
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    try {
      for (let i = 0; i < 400; i++) {
        const r = await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()`,
          [fdb.name],
        );
        if (r.rowCount) return r.rowCount;
        await new Promise((res) => setTimeout(res, 5));
      }
      return 0;
    } finally {
      await admin.end();
    }
  }

  it('fails the batch with a transient error, and the process and the pool carry on', async () => {
    const applier = new Applier(db.pool, registry, pino({ level: 'silent' }));
    const batch = registry
      .prepare(
        Array.from({ length: 20_000 }, (_, i) => ({
          machine: 'promotion',
          entityId: `drop-${i}`,
          type: 'activate',
          eventId: `drop-e${i}`,
          data: { title: `t${i}` },
        })),
        'src',
        true,
      )
      .map((event) => ({ event, jobId: null }));
    const [result, killed] = await Promise.allSettled([applier.apply(batch), killWhenActive()]);
    expect(killed).toMatchObject({ status: 'fulfilled' });
    expect((killed as PromiseFulfilledResult<number>).value).toBeGreaterThan(0);
    expect(result.status).toBe('rejected');
    expect(isTransient((result as PromiseRejectedResult).reason)).toBe(true);
    // The dropped client was discarded, not returned to the pool: the next batch runs.
    const [next] = await applier.apply(batch.slice(0, 1));
    expect(next).toMatchObject({ outcome: 'applied', status: 'ACTIVATED' });
  });

  it('a transaction whose connection drops while idle rejects instead of ending the process', async () => {
    // A checked-out client that is between two queries gets the drop as an 'error' event
    // (with no query to reject); unheard, that event would end the process.
    const run = withTransaction(db.pool, async (c) => {
      const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const admin = new pg.Client({ connectionString: ADMIN_URL });
      await admin.connect();
      await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      await admin.end();
      await new Promise((res) => setTimeout(res, 300));
      await c.query('SELECT 1');
    });
    await expect(run).rejects.toThrow();
    expect((await db.pool.query('SELECT 1 AS one')).rows[0]).toEqual({ one: 1 });
  });
});

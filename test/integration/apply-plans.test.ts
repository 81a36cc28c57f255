import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../../src/domain/index.ts';
import { useStore } from '../helpers/store.ts';

/**
 * The apply statement is prepared once per connection. After five runs Postgres may keep a
 * generic plan for it; one made while the entity table is nearly empty cannot tell the primary
 * key from the other indexes that start with `machine`, and may look each row up through one
 * of those, reading every entry of the machine. The statement must not keep such a plan once
 * the table has grown.
 */
describe('the apply statement after the entity table has grown', () => {
  const registry = MachineRegistry.from(machines);
  // One connection: every batch runs on it, as on a long-lived connection of a worker.
  const store = useStore(registry, 1);

  const batch = (ids: string[], type: string, round: string) =>
    registry
      .prepare(
        ids.map((id, i) => ({ machine: 'promotion', entityId: id, type, eventId: `${round}-${i}` })),
        'src',
        true,
      )
      .map((event) => ({ event, jobId: null }));

  /** Index entries of `entity` read, and rows read by sequential scans, while `run` ran. */
  async function reads(run: () => Promise<unknown>): Promise<{ idx: number; seq: number }> {
    // Another session of the same database, whose snapshot of the statistics can be cleared.
    const admin = new pg.Client({ connectionString: store.url });
    await admin.connect();
    const read = async () => {
      await store.pool.query('SELECT pg_stat_force_next_flush()');
      await admin.query('SELECT pg_stat_clear_snapshot()');
      const { rows } = await admin.query<{ idx: string; seq: string }>(
        `SELECT coalesce(t.seq_tup_read, 0) AS seq,
                (SELECT coalesce(sum(i.idx_tup_read), 0) FROM pg_stat_user_indexes i WHERE i.relid = t.relid) AS idx
         FROM pg_stat_user_tables t WHERE t.relname = 'entity'`,
      );
      return { idx: Number(rows[0]!.idx), seq: Number(rows[0]!.seq) };
    };
    try {
      const before = await read();
      await run();
      const after = await read();
      return { idx: after.idx - before.idx, seq: after.seq - before.seq };
    } finally {
      await admin.end();
    }
  }

  it('looks its rows up by key, whatever plan it had while the table was small', async () => {
    // Ten batches of 400 events on four entities, the table nearly empty: batches that large
    // make Postgres settle on a generic plan, made for that table.
    for (let round = 0; round < 10; round++) {
      const ids = Array.from({ length: 400 }, (_, i) => `small-${i % 4}`);
      const out = await store.applier.apply(batch(ids, round % 2 ? 'complete' : 'activate', `s${round}`));
      expect(out).toHaveLength(400);
    }
    // The table grows by 30,000 rows written by something else (another worker, a restore).
    await store.pool.query(
      `INSERT INTO entity (machine, entity_id, status, last_event, key)
       SELECT 'promotion', 'big-' || i, 'ACTIVATED', 'activate', 1 FROM generate_series(1, 30000) AS i`,
    );
    const ids = Array.from({ length: 200 }, (_, i) => `big-${i * 150 + 1}`);
    const r = await reads(async () => {
      const out = await store.applier.apply(batch(ids, 'complete', 'grown'));
      expect(out.every((o) => o.outcome === 'applied')).toBe(true);
    });
    // By key: a few index entries per row, to read, lock and update it. The plan made for the
    // nearly empty table read the grown table whole in the batch (30,004 rows by a sequential
    // scan, before the statement was prepared again as the table grew).
    expect(r.seq).toBe(0);
    expect(r.idx).toBeLessThan(ids.length * 10);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../../src/domain/index.ts';
import { Applier, openDatabase, purgeTombstones, type Database } from '../../src/store/index.ts';
import { freshDatabase } from '../helpers/db.ts';

describe('tombstone retention', () => {
  let fdb: Awaited<ReturnType<typeof freshDatabase>>;
  let db: Database;
  const registry = MachineRegistry.from(machines);
  let applier: Applier;
  const send = (entityId: string, type: string, eventId: string) =>
    applier.apply([
      {
        event: registry.prepare([{ machine: 'promotion', entityId, type, eventId }], 'src', false)[0]!,
        jobId: null,
      },
    ]);
  const count = async (sql: string) => Number((await db.pool.query<{ n: string }>(sql)).rows[0]!.n);

  beforeAll(async () => {
    fdb = await freshDatabase();
    db = openDatabase(fdb.url, 2);
    applier = new Applier(db.pool, registry, pino({ level: 'silent' }));
    await send('old-deleted', 'delete', 'e1');
    await send('old-active', 'activate', 'e2');
    await send('new-deleted', 'delete', 'e3');
    await db.pool.query(
      `UPDATE entity SET updated_at = now() - interval '100 days' WHERE entity_id IN ('old-deleted', 'old-active')`,
    );
    await db.pool.query(
      `UPDATE event_key SET created_at = now() - interval '100 days' WHERE event_id IN ('e1', 'e2')`,
    );
  });
  afterAll(async () => {
    await db?.close();
    await fdb?.drop();
  });

  it('a dry run counts old tombstones and changes nothing', async () => {
    const r = await purgeTombstones(db.pool, registry, new Date(Date.now() - 90 * 86_400_000), {
      dryRun: true,
    });
    expect(r.entities.promotion).toBe(1);
    expect(r.events).toBe(1);
    expect(r.eventKeys).toBe(2);
    expect(await count('SELECT count(*)::text AS n FROM entity')).toBe(3);
  });

  it('purges only tombstones older than the cut-off, with their log, and old idempotency keys', async () => {
    const r = await purgeTombstones(db.pool, registry, new Date(Date.now() - 90 * 86_400_000));
    expect(r).toMatchObject({ entities: { promotion: 1 }, events: 1, eventKeys: 2, dryRun: false });
    const left = await db.pool.query<{ entity_id: string }>(
      'SELECT entity_id FROM entity ORDER BY entity_id',
    );
    expect(left.rows.map((x) => x.entity_id)).toEqual(['new-deleted', 'old-active']);
    expect(await count(`SELECT count(*)::text AS n FROM event_log WHERE entity_id = 'old-deleted'`)).toBe(0);
  });

  it('a late event for a purged tombstone recreates the entity (the documented trade-off)', async () => {
    const [r] = await send('old-deleted', 'activate', 'late-1');
    expect(r).toMatchObject({ outcome: 'applied', status: 'ACTIVATED' });
  });

  it('a late event for a kept tombstone is stale', async () => {
    const [r] = await send('new-deleted', 'activate', 'late-2');
    expect(r).toMatchObject({ outcome: 'stale', status: 'DELETED' });
  });
});

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import { ownerOf } from '../../src/domain/rebuild.ts';
import { Applier } from '../../src/store/apply.ts';
import { migrate } from '../../src/store/migrate.ts';
import { ADMIN_URL, testPool } from '../helpers/db.ts';

const registry = MachineRegistry.from(machines);

// Of two events with the same key, the source that sorts first owns the entity, in byte order
// as TypeScript compares. A database whose default collation sorts case-insensitively (ICU
// "en": "a-src" before "B-src") must reach the same owner as the pure rule.
describe('the owner of equal keys does not depend on the database collation', () => {
  const name = `promosync_t_${randomBytes(6).toString('hex')}`;
  let admin: pg.Client;
  let pool: pg.Pool;
  beforeAll(async () => {
    admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(
      `CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'`,
    );
    const u = new URL(ADMIN_URL);
    u.pathname = `/${name}`;
    await migrate(u.toString());
    pool = testPool(u.toString(), 1);
  });
  afterAll(async () => {
    await pool?.end();
    await admin?.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin?.end();
  });

  it('two creates with the same key from "a-src" and "B-src" leave "B-src" the owner, in any order and batching', async () => {
    const applier = new Applier(pool, registry, pino({ level: 'silent' }));
    const create = (entityId: string, source: string) =>
      registry.prepare([{ machine: 'promotion', entityId, type: 'create' }], source, false)[0]!;
    for (const [entityId, first, second, together] of [
      ['coll-1', 'a-src', 'B-src', false],
      ['coll-2', 'B-src', 'a-src', false],
      ['coll-3', 'a-src', 'B-src', true],
      ['coll-4', 'B-src', 'a-src', true],
    ] as const) {
      const events = [create(entityId, first), create(entityId, second)];
      if (together) await applier.apply(events.map((event) => ({ event, jobId: null })));
      else for (const event of events) await applier.apply([{ event, jobId: null }]);
      const { rows } = await pool.query<{ owner_source: string }>(
        'SELECT owner_source FROM entity WHERE entity_id = $1',
        [entityId],
      );
      expect(ownerOf(events)?.source).toBe('B-src');
      expect(rows[0]?.owner_source, entityId).toBe('B-src');
    }
  });
});

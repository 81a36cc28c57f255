import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../src/store/migrate.ts';

/** The server tests run against; each test file gets its own database on it. */
export const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A fresh, migrated database; `drop()` removes it. */
export async function freshDatabase(
  migrated = true,
): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `promosync_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = withDatabase(ADMIN_URL, name);
  if (migrated) await migrate(url);
  return {
    url,
    name,
    async drop() {
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * A pool on a test database. `end()` resolves before its connections have closed, so the
 * `DROP DATABASE … WITH (FORCE)` that follows can terminate one of them first; the pool would
 * re-emit that idle client's error and, with no listener, fail the run after its tests passed.
 * Errors of queries still reach their callers.
 */
export function testPool(url: string, max?: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, ...(max !== undefined ? { max } : {}) });
  pool.on('error', () => {});
  return pool;
}

/** A queue name no other test uses. */
export function uniqueQueueName(prefix = 'test'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../src/store/index.ts';

/** A database of the benchmark's own on the server, dropped when the scenario ends. */
export interface BenchDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Creates (and, unless told otherwise, migrates) a fresh database next to `serverUrl`'s. */
export async function createDatabase(serverUrl: string, migrated = true): Promise<BenchDatabase> {
  const name = `promosync_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(serverUrl, name);
  if (migrated) await migrate(url);
  return {
    url,
    name,
    async drop() {
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * A small pool on a bench database. `end()` resolves before its connections have closed, so the
 * `DROP DATABASE … WITH (FORCE)` that follows can terminate one of them first; the pool would
 * re-emit that idle client's error and, with no listener, end the process. Errors of queries
 * still reach their callers.
 */
export function benchPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => {});
  return pool;
}

/** A queue name no other run uses. */
export function uniqueQueueName(prefix: string): string {
  return `bench-${prefix}-${randomBytes(4).toString('hex')}`;
}

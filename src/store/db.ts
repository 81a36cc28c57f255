import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client.ts';

export type { PrismaClient };

/** The database handles of one process: a pg pool, shared with the Prisma client. */
export interface Database {
  pool: pg.Pool;
  prisma: PrismaClient;
  close(): Promise<void>;
}

/**
 * Opens a pool of at most `poolSize` connections to `url`, and a Prisma client on it.
 * Idle errors (the server went away) are logged by the caller through `onError`; the pool
 * reconnects on the next query.
 */
export function openDatabase(
  url: string,
  poolSize: number,
  onError: (err: Error) => void = () => {},
): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    application_name: 'promosync',
  });
  pool.on('error', onError);
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  let closed = false;
  return {
    pool,
    prisma,
    async close() {
      if (closed) return;
      closed = true;
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

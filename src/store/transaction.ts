import type { Pool, PoolClient } from 'pg';

/**
 * Runs `fn` on one connection inside a transaction: committed when `fn` resolves (rolled
 * back instead when `commit` is false, e.g. for a dry run), rolled back when it throws.
 */
export async function withTransaction<T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
  options: { begin?: string; commit?: boolean } = {},
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(options.begin ?? 'BEGIN');
    const out = await fn(client);
    await client.query(options.commit === false ? 'ROLLBACK' : 'COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

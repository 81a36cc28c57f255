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
  let broken: Error | undefined;
  // A dropped connection is also emitted as 'error' on a checked-out client: without a
  // listener it would end the process. The pending query rejects too, and we rethrow that.
  const onError = (err: Error): void => {
    broken = err;
  };
  client.on('error', onError);
  try {
    await client.query(options.begin ?? 'BEGIN');
    const out = await fn(client);
    await client.query(options.commit === false ? 'ROLLBACK' : 'COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

import type pg from 'pg';

/** The writes a worker makes when it applies events. */
const NEEDED: ReadonlyArray<readonly [table: string, privilege: string]> = [
  ['entity', 'INSERT'],
  ['entity', 'UPDATE'],
  ['event_log', 'INSERT'],
  ['event_key', 'INSERT'],
];

/**
 * What keeps this connection from applying events: table privileges the role lacks, or a
 * read-only session (a standby, `default_transaction_read_only`). Empty when it can write.
 * One catalog query, no write: cheap enough for every readiness probe.
 */
export async function writeProblems(pool: pg.Pool): Promise<string[]> {
  const checks = NEEDED.map(([t, p], i) => `has_table_privilege(current_user, '${t}', '${p}') AS p${i}`);
  // The log's ids come from a sequence: INSERT without USAGE on it fails just the same.
  const { rows } = await pool.query<Record<string, unknown>>(
    `SELECT current_user AS role, current_setting('transaction_read_only') AS read_only,
            has_sequence_privilege(current_user, pg_get_serial_sequence('event_log', 'id'), 'USAGE') AS seq,
            ${checks.join(', ')}`,
  );
  const row = rows[0]!;
  const out = NEEDED.filter((_, i) => row[`p${i}`] !== true).map(
    ([t, p]) => `role ${String(row.role)} lacks ${p} on ${t}`,
  );
  if (row.seq !== true) out.push(`role ${String(row.role)} lacks USAGE on the sequence of event_log.id`);
  if (row.read_only === 'on')
    out.push('the session is read-only (a standby, or default_transaction_read_only)');
  return out;
}

/**
 * Readiness probe of a worker: fails when it could not write what it applies.
 * @throws Error listing what is missing.
 */
export async function assertWritable(pool: pg.Pool): Promise<void> {
  const problems = await writeProblems(pool);
  if (problems.length > 0) throw new Error(`cannot apply events: ${problems.join('; ')}`);
}

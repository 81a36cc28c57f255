import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import type { MachineRegistry } from '../domain/index.ts';
import { PromosyncError } from '../domain/index.ts';

/** What changed for one machine since its definition was last stored. */
export interface MachineSync {
  machine: string;
  status: 'new' | 'unchanged' | 'reranked';
  /** Rows whose keys were recomputed. */
  rows: number;
}

/** Advisory lock held while machine definitions are compared and rows re-ranked. */
const RERANK_LOCK = 0x70726f6d; // "prom"

const defHash = (def: unknown): string => createHash('sha256').update(JSON.stringify(def)).digest('hex');

/**
 * Stores each machine's ranks and, where they changed since the stored definition,
 * re-ranks stored rows (their key and their fields' keys, from the stored event names)
 * in one transaction, before this process applies anything. Concurrent starts serialize
 * on an advisory lock, so rows are re-ranked once.
 * @throws PromosyncError `machine_invalid` when stored rows use a state or event type the
 * machine no longer has, unless `acceptRemoved`.
 */
export async function syncMachineDefs(
  pool: Pool,
  registry: MachineRegistry,
  options: { acceptRemoved?: boolean } = {},
): Promise<MachineSync[]> {
  const client = await pool.connect();
  const report: MachineSync[] = [];
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [RERANK_LOCK]);
    for (const info of registry.list()) {
      const a = info.analysis;
      const ranks = Object.fromEntries(a.events.map((e) => [e.type, e.rank]));
      const def = { ordering: a.ordering, ranks, states: a.states };
      const hash = defHash(def);
      const { rows } = await client.query<{ hash: string }>('SELECT hash FROM machine_def WHERE name = $1', [
        a.name,
      ]);
      const stored = rows[0];
      if (stored?.hash === hash) {
        report.push({ machine: a.name, status: 'unchanged', rows: 0 });
        continue;
      }
      const gone = await client.query<{ what: string; name: string; n: string }>(
        `SELECT 'state' AS what, status AS name, count(*)::text AS n FROM entity
           WHERE machine = $1 AND NOT (status = ANY($2::text[])) GROUP BY status
         UNION ALL
         SELECT 'event type', last_event, count(*)::text FROM entity
           WHERE machine = $1 AND NOT ($3::jsonb ? last_event) GROUP BY last_event`,
        [a.name, a.states, JSON.stringify(ranks)],
      );
      if (gone.rows.length > 0 && !options.acceptRemoved) {
        const list = gone.rows.map((r) => `${r.what} "${r.name}" (${r.n} rows)`).join(', ');
        throw new PromosyncError(
          'machine_invalid',
          `machine "${a.name}" no longer has ${list} that stored rows still use; ` +
            'restore them, migrate the rows, or start with --accept-removed to keep those rows as they are',
        );
      }
      let updated = 0;
      if (stored) {
        // Keys are recomputed from the event names; rows whose event is gone keep their key.
        const keyOf = (typeExpr: string, versionExpr: string): string =>
          a.ordering === 'version'
            ? `(coalesce(${versionExpr}, 0) * 512 + ($2::jsonb ->> ${typeExpr})::bigint)`
            : `((($2::jsonb ->> ${typeExpr})::bigint << 53) + coalesce(${versionExpr}, 0))`;
        const res = await client.query(
          `UPDATE entity SET
             key = coalesce(${keyOf('last_event', 'version')}, key),
             fields = coalesce((SELECT jsonb_object_agg(f.key, CASE WHEN $2::jsonb ? (f.value ->> 'e')
                         THEN jsonb_set(f.value, '{k}', to_jsonb(${keyOf("(f.value ->> 'e')", "(f.value ->> 'n')::bigint")}))
                         ELSE f.value END)
                       FROM jsonb_each(fields) f), '{}'::jsonb)
           WHERE machine = $1`,
          [a.name, JSON.stringify(ranks)],
        );
        updated = res.rowCount ?? 0;
      }
      await client.query(
        `INSERT INTO machine_def (name, ordering, ranks, states, hash, updated_at) VALUES ($1, $2, $3, $4, $5, now())
         ON CONFLICT (name) DO UPDATE SET ordering = $2, ranks = $3, states = $4, hash = $5, updated_at = now()`,
        [a.name, a.ordering, JSON.stringify(ranks), a.states, hash],
      );
      report.push({ machine: a.name, status: stored ? 'reranked' : 'new', rows: updated });
    }
    await client.query('COMMIT');
    return report;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import { withTransaction } from './transaction.ts';
import type { MachineRegistry } from '../domain/index.ts';
import {
  PromosyncError,
  sqlFieldEvent,
  sqlFieldVersion,
  sqlOrderingKey,
  sqlWithFieldKey,
} from '../domain/index.ts';

/** What changed for one machine since its definition was last stored. */
export interface MachineSync {
  machine: string;
  /** `removed`: stored before, no longer in the registry (its rows were accepted as they are). */
  status: 'new' | 'unchanged' | 'reranked' | 'removed';
  /** Rows whose keys were recomputed; for `removed`, the rows left as they are. */
  rows: number;
}

/** Advisory lock held while machine definitions are compared and rows re-ranked. */
const RERANK_LOCK = 0x70726f6d; // "prom"

const defHash = (def: unknown): string => createHash('sha256').update(JSON.stringify(def)).digest('hex');

const rowsText = (n: string): string => `${n} ${n === '1' ? 'row' : 'rows'}`;

const ACCEPT = 'start with --accept-removed to keep those rows as they are';

/**
 * Stores each machine's ranks and, where they changed since the stored definition (or no
 * definition was stored although rows exist), re-ranks stored rows (their key and their
 * fields' keys, from the stored event names) in one transaction, before this process
 * applies anything. Concurrent starts serialize on an advisory lock, so rows are re-ranked once.
 *
 * Rows whose last event, or a field's writer, is an event type the machine no longer has
 * keep that key as it was: there is no rank to recompute it from.
 * @throws PromosyncError `machine_invalid` when stored rows use a state or event type the
 * machine no longer has, or belong to a machine no longer in the registry, unless `acceptRemoved`.
 */
export async function syncMachineDefs(
  pool: Pool,
  registry: MachineRegistry,
  options: { acceptRemoved?: boolean } = {},
): Promise<MachineSync[]> {
  return withTransaction(pool, async (client) => {
    const report: MachineSync[] = [];
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
      // An event type is in use when a row's last event or one of its fields' writers is of it.
      const gone = await client.query<{ what: string; name: string; n: string }>(
        `SELECT 'state' AS what, status AS name, count(*)::text AS n FROM entity
           WHERE machine = $1 AND NOT (status = ANY($2::text[])) GROUP BY status
         UNION ALL
         SELECT 'event type', u.name, count(DISTINCT u.entity_id)::text FROM (
             SELECT entity_id, last_event AS name FROM entity WHERE machine = $1
             UNION ALL
             SELECT e.entity_id, ${sqlFieldEvent('f.value')} FROM entity e CROSS JOIN LATERAL jsonb_each(e.fields) f
              WHERE e.machine = $1
           ) u
           WHERE u.name IS NOT NULL AND NOT ($3::jsonb ? u.name) GROUP BY u.name
         ORDER BY 1 DESC, 2`,
        [a.name, a.states, JSON.stringify(ranks)],
      );
      if (gone.rows.length > 0 && !options.acceptRemoved) {
        const list = gone.rows.map((r) => `${r.what} "${r.name}" (${rowsText(r.n)})`).join(', ');
        throw new PromosyncError(
          'machine_invalid',
          `machine "${a.name}" no longer has ${list} that stored rows still use; restore them, ` +
            `migrate the rows, or ${ACCEPT} (their keys are not recomputed; later events still apply by key)`,
        );
      }
      // Keys are recomputed from the event names; rows whose event is gone keep their key.
      // Also without a stored definition (a machine added again): recomputing is idempotent,
      // and on a first start there are no rows.
      const keyOf = (typeExpr: string, versionExpr: string): string =>
        sqlOrderingKey(a.ordering, `($2::jsonb ->> ${typeExpr})::bigint`, `coalesce(${versionExpr}, 0)`);
      const fieldEvent = sqlFieldEvent('f.value');
      const res = await client.query(
        `UPDATE entity SET
             key = coalesce(${keyOf('last_event', 'version')}, key),
             -- The owner's key cannot be recomputed (its event is not stored): key 0 pins the owner.
             owner_key = CASE WHEN owner_source IS NULL THEN owner_key ELSE 0 END,
             fields = coalesce((SELECT jsonb_object_agg(f.key, CASE WHEN $2::jsonb ? ${fieldEvent}
                         THEN ${sqlWithFieldKey('f.value', keyOf(fieldEvent, sqlFieldVersion('f.value')))}
                         ELSE f.value END)
                       FROM jsonb_each(fields) f), '{}'::jsonb)
           WHERE machine = $1`,
        [a.name, JSON.stringify(ranks)],
      );
      const updated = res.rowCount ?? 0;
      await client.query(
        `INSERT INTO machine_def (name, ordering, ranks, states, hash, updated_at) VALUES ($1, $2, $3, $4, $5, now())
         ON CONFLICT (name) DO UPDATE SET ordering = $2, ranks = $3, states = $4, hash = $5, updated_at = now()`,
        [a.name, a.ordering, JSON.stringify(ranks), a.states, hash],
      );
      report.push({ machine: a.name, status: stored ? 'reranked' : 'new', rows: updated });
    }
    // Machines stored before but no longer served: their rows would silently stop changing.
    const names = registry.list().map((i) => i.analysis.name);
    const { rows: removed } = await client.query<{ name: string; n: string }>(
      `SELECT d.name, (SELECT count(*) FROM entity e WHERE e.machine = d.name)::text AS n
         FROM machine_def d WHERE NOT (d.name = ANY($1::text[])) ORDER BY d.name`,
      [names],
    );
    for (const r of removed) {
      if (r.n !== '0' && !options.acceptRemoved) {
        throw new PromosyncError(
          'machine_invalid',
          `machine "${r.name}" is no longer in the registry (machines/index.ts) but has ${rowsText(r.n)}; ` +
            `add it back, delete its rows, or ${ACCEPT} (events for it are rejected from now on)`,
        );
      }
      // Forgotten, so a machine added again under this name re-ranks its rows as new.
      await client.query('DELETE FROM machine_def WHERE name = $1', [r.name]);
      report.push({ machine: r.name, status: 'removed', rows: Number(r.n) });
    }
    return report;
  });
}

import type { Pool } from 'pg';
import { withTransaction } from './transaction.ts';
import { recordPurge } from './changes.ts';
import type { MachineRegistry } from '../domain/index.ts';

export interface PurgeReport {
  /** Rows in a final state purged, per machine. */
  entities: Record<string, number>;
  /** Event-log rows of those entities. */
  events: number;
  /** Idempotency keys older than the cut-off. */
  eventKeys: number;
  dryRun: boolean;
}

/**
 * Tombstone retention: deletes entities that reached a final state (e.g. DELETED) before
 * `olderThan`, their event log, and idempotency keys older than that. The trade-off: an event
 * for a purged entity that still arrives later is no longer recognised as stale or as a
 * duplicate and recreates the row. Tombstones are kept forever unless this runs.
 */
export async function purgeTombstones(
  pool: Pool,
  registry: MachineRegistry,
  olderThan: Date,
  options: { dryRun?: boolean } = {},
): Promise<PurgeReport> {
  const dryRun = options.dryRun ?? false;
  const report: PurgeReport = { entities: {}, events: 0, eventKeys: 0, dryRun };
  return withTransaction(
    pool,
    async (client) => {
      for (const info of registry.list()) {
        const { name, finalStates } = info.analysis;
        if (finalStates.length === 0) continue;
        const res = await client.query<{ n: string; e: string; xid: string | null; id: string | null }>(
          `WITH gone AS (
           ${dryRun ? 'SELECT machine, entity_id, change_xid FROM entity' : 'DELETE FROM entity'}
           WHERE machine = $1 AND status = ANY($2::text[]) AND updated_at < $3
           ${dryRun ? '' : 'RETURNING machine, entity_id, change_xid'}
         ), newest AS (
           SELECT change_xid::text AS xid, entity_id AS id FROM gone ORDER BY change_xid DESC, entity_id DESC LIMIT 1
         ), log AS (
           ${dryRun ? 'SELECT 1 FROM event_log l' : 'DELETE FROM event_log l'}
           ${dryRun ? 'JOIN gone g ON' : 'USING gone g WHERE'} l.machine = g.machine AND l.entity_id = g.entity_id
           ${dryRun ? '' : 'RETURNING 1'}
         )
         SELECT (SELECT count(*) FROM gone)::text AS n, (SELECT count(*) FROM log)::text AS e,
                (SELECT xid FROM newest) AS xid, (SELECT id FROM newest) AS id`,
          [name, finalStates, olderThan],
        );
        // Followers cannot be told about removed rows: a cursor below them must list again.
        const newest = res.rows[0]!;
        if (!dryRun && newest.xid !== null) await recordPurge(client, name, newest.xid, newest.id!);
        report.entities[name] = Number(res.rows[0]!.n);
        report.events += Number(res.rows[0]!.e);
      }
      const keys = await client.query<{ n: string }>(
        dryRun
          ? 'SELECT count(*)::text AS n FROM event_key WHERE created_at < $1'
          : 'WITH d AS (DELETE FROM event_key WHERE created_at < $1 RETURNING 1) SELECT count(*)::text AS n FROM d',
        [olderThan],
      );
      report.eventKeys = Number(keys.rows[0]!.n);
      return report;
    },
    { commit: !dryRun },
  );
}

/** Parses `90d`, `12h`, `30m` or `45s` into milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)\s*(d|h|m|s)$/.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not a duration like 90d, 12h, 30m or 45s`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }[m[2] as 'd' | 'h' | 'm' | 's'];
  return Number(m[1]) * unit;
}

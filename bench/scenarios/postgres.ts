import pg from 'pg';
import type { PreparedEvent } from '../../src/domain/index.ts';
import type { BenchContext, ScenarioResult } from '../context.ts';
import { CpuMeter, type CpuReport } from '../cpu.ts';
import { benchPool, createDatabase, type BenchDatabase } from '../db.ts';
import { wrongStatuses } from '../verify.ts';

/** A design that writes one event (or one batch) on one connection. */
type Step<T> = (client: pg.Client, item: T) => Promise<void>;

/** The bare table of a reference design: no event log, no idempotency keys, no attributes. */
export const designTable = (name: string): string =>
  `CREATE TABLE ${name} (entity_id text PRIMARY KEY, status text NOT NULL, key bigint NOT NULL)`;

/**
 * Runs `step` over `items` in order from `connections` connections at once; returns seconds
 * and the CPU report (measured before the connections close, so their backends count).
 */
async function drive<T>(
  url: string,
  connections: number,
  items: T[],
  step: Step<T>,
  cpu: CpuMeter,
): Promise<{ seconds: number; cpu: CpuReport }> {
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = new pg.Client({ connectionString: url, application_name: 'promosync-bench' });
      await c.connect();
      return c;
    }),
  );
  try {
    let next = 0;
    await cpu.start();
    const t0 = performance.now();
    await Promise.all(
      clients.map(async (c) => {
        while (next < items.length) await step(c, items[next++]!);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, cpu: await cpu.stop() };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

/** SYNC1: one conditional upsert per event; the row moves only when the event's key is higher. */
const sync1: Step<PreparedEvent> = async (c, e) => {
  await c.query({
    name: 'sync1',
    text: `INSERT INTO sync1 AS t (entity_id, status, key) VALUES ($1, $2, $3)
           ON CONFLICT (entity_id) DO UPDATE SET status = EXCLUDED.status, key = EXCLUDED.key
           WHERE t.key < EXCLUDED.key`,
    values: [e.entityId, e.target, e.key.toString()],
  });
};

/** SYNC2: a transaction per event: lock the row, compare in the application, write. */
const sync2: Step<PreparedEvent> = async (c, e) => {
  for (;;) {
    await c.query('BEGIN');
    try {
      const { rows } = await c.query<{ key: string }>({
        name: 'sync2_lock',
        text: 'SELECT key FROM sync2 WHERE entity_id = $1 FOR UPDATE',
        values: [e.entityId],
      });
      if (rows.length === 0) {
        const ins = await c.query({
          name: 'sync2_insert',
          text: 'INSERT INTO sync2 (entity_id, status, key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
          values: [e.entityId, e.target, e.key.toString()],
        });
        if (ins.rowCount === 0) {
          // Created by another connection meanwhile: start over and lock it.
          await c.query('ROLLBACK');
          continue;
        }
      } else if (BigInt(rows[0]!.key) < e.key) {
        await c.query({
          name: 'sync2_update',
          text: 'UPDATE sync2 SET status = $2, key = $3 WHERE entity_id = $1',
          values: [e.entityId, e.target, e.key.toString()],
        });
      }
      await c.query('COMMIT');
      return;
    } catch (err) {
      await c.query('ROLLBACK');
      throw err;
    }
  }
};

/** The naive worker: whatever arrives last wins. */
const naive: Step<PreparedEvent> = async (c, e) => {
  await c.query({
    name: 'naive',
    text: `INSERT INTO naive (entity_id, status, key) VALUES ($1, $2, $3)
           ON CONFLICT (entity_id) DO UPDATE SET status = EXCLUDED.status, key = EXCLUDED.key`,
    values: [e.entityId, e.target, e.key.toString()],
  });
};

export interface Rows {
  ids: string[];
  statuses: string[];
  keys: string[];
  events: number;
}

/** The raw batched-upsert ceiling: `ceilingRows` events per statement, folded per entity, unnest. */
const ceiling: Step<Rows> = async (c, r) => {
  await c.query({
    name: 'ceiling',
    text: `INSERT INTO ceiling AS t (entity_id, status, key)
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
           ON CONFLICT (entity_id) DO UPDATE SET status = EXCLUDED.status, key = EXCLUDED.key
           WHERE t.key < EXCLUDED.key`,
    values: [r.ids, r.statuses, r.keys],
  });
};

/** The events in chunks of `size`, each folded to its highest-keyed event per entity, sorted by entity. */
export function foldedChunks(events: PreparedEvent[], size: number): Rows[] {
  const out: Rows[] = [];
  for (let i = 0; i < events.length; i += size) {
    const best = new Map<string, PreparedEvent>();
    const chunk = events.slice(i, i + size);
    for (const e of chunk) {
      const b = best.get(e.entityId);
      if (!b || e.key > b.key) best.set(e.entityId, e);
    }
    // Sorted, so concurrent statements lock rows in the same order and cannot deadlock.
    const rows = [...best.values()].sort((a, b) => (a.entityId < b.entityId ? -1 : 1));
    out.push({
      ids: rows.map((e) => e.entityId),
      statuses: rows.map((e) => e.target),
      keys: rows.map((e) => e.key.toString()),
      events: chunk.length,
    });
  }
  return out;
}

export type PostgresDesign = 'sync1' | 'sync2' | 'naive' | 'ceiling';

const NAMES: Record<PostgresDesign, string> = {
  sync1: 'SYNC1: conditional upsert per event',
  sync2: 'SYNC2: SELECT … FOR UPDATE transaction per event',
  naive: 'Naive worker: last arrival wins, per event',
  ceiling: 'Raw batched upsert (the ceiling)',
};

/**
 * The reference designs on the same Postgres, on the same events in the same arrival order,
 * each into a bare table of its own (entity_id, status, key): no event log, no idempotency
 * keys, no attributes. They count entities left in a status other than the expected one.
 */
export async function postgresDesigns(
  ctx: BenchContext,
  designs: PostgresDesign[],
): Promise<ScenarioResult[]> {
  const s = ctx.settings;
  const events = ctx.registry.prepare(ctx.workload.sent, 'bench', false);
  const out: ScenarioResult[] = [];
  let db: BenchDatabase | undefined;
  try {
    db = await createDatabase(s.serverUrl, false);
    const admin = benchPool(db.url);
    try {
      for (const d of designs) {
        const result: ScenarioResult = {
          id: d,
          name: NAMES[d],
          count: events.length,
          seconds: 0,
          rate: 0,
          unit: d === 'ceiling' ? 'rows/s' : 'events/s',
          notes: [],
        };
        try {
          await admin.query(designTable(d));
          const cpu = new CpuMeter(s.serverUrl, db.name, undefined, () => ({}));
          let run: { seconds: number; cpu: CpuReport };
          if (d === 'ceiling') {
            const rows = foldedChunks(events, s.ceilingRows);
            run = await drive(db.url, s.ceilingConnections, rows, ceiling, cpu);
            result.notes.push(
              `${s.ceilingRows} events per statement (folded to one row per entity), ${s.ceilingConnections} connections`,
            );
          } else {
            const step = d === 'sync1' ? sync1 : d === 'sync2' ? sync2 : naive;
            run = await drive(db.url, s.pgConnections, events, step, cpu);
            result.notes.push(
              `one ${d === 'sync2' ? 'transaction' : 'statement'} per event, ${s.pgConnections} connections`,
            );
          }
          result.seconds = run.seconds;
          result.cpu = run.cpu;
          result.rate = result.count / result.seconds;
          result.wrongStatuses = await wrongStatuses(admin, d, ctx.expected);
        } catch (err) {
          result.error = err instanceof Error ? err.message : String(err);
        }
        out.push(result);
        ctx.log(`${result.name}: ${Math.round(result.rate)} ${result.unit}`);
      }
    } finally {
      await admin.end();
    }
  } finally {
    await db?.drop();
  }
  return out;
}

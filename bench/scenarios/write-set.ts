import pg from 'pg';
import type { PreparedEvent } from '../../src/domain/index.ts';
import type { BenchContext, RowCounts, ScenarioResult } from '../context.ts';
import { CpuMeter, type CpuReport } from '../cpu.ts';
import { benchPool, createDatabase, type BenchDatabase } from '../db.ts';
import { runPgbench } from './pgbench.ts';

/**
 * One statement's worth of the write set: the rows promosync writes for these events, as
 * parallel arrays. `keys` holds each (source, eventId) once; `log` one row per event;
 * `entities` one row per entity, folded in input order (the last event's status, key and
 * version; each field from the last event that carries it, in the stored field format).
 */
export interface WriteSetBatch {
  lane: number;
  batch: number;
  events: number;
  jobId: string;
  keys: [sources: string[], eventIds: string[]];
  log: [
    machine: string[],
    entityId: string[],
    type: string[],
    version: (string | null)[],
    eventId: (string | null)[],
    source: string[],
    merchantId: (string | null)[],
    data: (string | null)[],
    occurredAt: (string | null)[],
  ];
  entities: [
    machine: string[],
    entityId: string[],
    status: string[],
    lastEvent: string[],
    key: string[],
    version: (string | null)[],
    merchantId: (string | null)[],
    fields: string[],
  ];
}

/** A lane of an entity: any stable hash (FNV-1a) splits entities between lanes as promosync's worker does. */
function laneOf(machine: string, entityId: string, lanes: number): number {
  let h = 0x811c9dc5;
  const s = `${machine}\u0000${entityId}`;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0) % lanes;
}

interface Folded {
  e: PreparedEvent;
  merchantId: string | null;
  fields: Map<string, { v: unknown; k: bigint; e: string; n: number | null }>;
}

/** `{ field: { v, k, e, n } }`, as the entity table stores attributes (see docs/design.md#fields). */
function fieldsJson(fields: Folded['fields']): string {
  const parts: string[] = [];
  for (const [name, f] of fields)
    parts.push(
      `${JSON.stringify(name)}:{"v":${JSON.stringify(f.v)},"k":${f.k},"e":${JSON.stringify(f.e)},"n":${f.n ?? 'null'}}`,
    );
  return `{${parts.join(',')}}`;
}

function batchOf(events: PreparedEvent[], lane: number, batch: number): WriteSetBatch {
  const out: WriteSetBatch = {
    lane,
    batch,
    events: events.length,
    jobId: `write-set-${lane}-${batch}`,
    keys: [[], []],
    log: [[], [], [], [], [], [], [], [], []],
    entities: [[], [], [], [], [], [], [], []],
  };
  const seen = new Set<string>();
  const folded = new Map<string, Folded>();
  for (const e of events) {
    if (e.eventId !== null) {
      const id = `${e.source}\u0000${e.eventId}`;
      if (!seen.has(id)) {
        seen.add(id);
        out.keys[0].push(e.source);
        out.keys[1].push(e.eventId);
      }
    }
    const l = out.log;
    l[0].push(e.machine);
    l[1].push(e.entityId);
    l[2].push(e.type);
    l[3].push(e.version === null ? null : String(e.version));
    l[4].push(e.eventId);
    l[5].push(e.source);
    l[6].push(e.merchantId);
    l[7].push(e.data === null ? null : JSON.stringify(e.data));
    l[8].push(e.occurredAt);
    const id = `${e.machine}\u0000${e.entityId}`;
    const f = folded.get(id) ?? { e, merchantId: null, fields: new Map() };
    f.e = e;
    f.merchantId ??= e.merchantId;
    for (const [name, v] of Object.entries(e.data ?? {}))
      f.fields.set(name, { v, k: e.key, e: e.type, n: e.version });
    folded.set(id, f);
  }
  for (const f of folded.values()) {
    const en = out.entities;
    en[0].push(f.e.machine);
    en[1].push(f.e.entityId);
    en[2].push(f.e.target);
    en[3].push(f.e.type);
    en[4].push(f.e.key.toString());
    en[5].push(f.e.version === null ? null : String(f.e.version));
    en[6].push(f.merchantId);
    en[7].push(fieldsJson(f.fields));
  }
  return out;
}

/**
 * The input split by entity into `lanes` lanes, each lane in arrival order cut into batches
 * of `size` events: what promosync's worker does with the same settings.
 */
export function writeSetBatches(events: PreparedEvent[], lanes: number, size: number): WriteSetBatch[][] {
  const parts = Array.from({ length: lanes }, () => [] as PreparedEvent[]);
  for (const e of events) parts[laneOf(e.machine, e.entityId, lanes)]!.push(e);
  return parts.map((part, lane) => {
    const out: WriteSetBatch[] = [];
    for (let i = 0; i < part.length; i += size) out.push(batchOf(part.slice(i, i + size), lane, out.length));
    return out;
  });
}

/** The entity upsert both drivers end with: last write wins, attributes merged, no key compared. */
const ENTITY_UPSERT = `ON CONFLICT (machine, entity_id) DO UPDATE SET
    status = EXCLUDED.status, last_event = EXCLUDED.last_event, key = EXCLUDED.key,
    version = EXCLUDED.version, merchant_id = coalesce(e.merchant_id, EXCLUDED.merchant_id),
    fields = e.fields || EXCLUDED.fields, updated_at = now()`;

/** The log's outcome column needs a value; the write set decides none, so every row says this. */
const OUTCOME = 'applied';

/** One statement per batch: the keys, the log rows and the entity rows, from parameter arrays. */
export const WRITE_SET_SQL = `
WITH k AS (
  INSERT INTO event_key (source, event_id)
  SELECT * FROM unnest($1::text[], $2::text[])
  ON CONFLICT DO NOTHING
), l AS (
  INSERT INTO event_log (machine, entity_id, type, version, event_id, source, merchant_id, data, occurred_at,
                         outcome, job_id)
  SELECT u.*, '${OUTCOME}', $20
  FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[],
              $10::jsonb[], $11::timestamptz[]) AS u
)
INSERT INTO entity AS e (machine, entity_id, status, last_event, key, version, merchant_id, fields)
SELECT * FROM unnest($12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[], $17::bigint[],
                     $18::text[], $19::jsonb[])
${ENTITY_UPSERT}`;

/**
 * The same statement for pgbench, reading batch `:batch` of lane `:client_id` from the input
 * tables {@link loadWriteSetInput} fills.
 */
export const WRITE_SET_PGBENCH = `
\\set batch :batch + 1
WITH k AS (
  INSERT INTO event_key (source, event_id)
  SELECT source, event_id FROM ws_key WHERE lane = :client_id AND batch = :batch
  ON CONFLICT DO NOTHING
), l AS (
  INSERT INTO event_log (machine, entity_id, type, version, event_id, source, merchant_id, data, occurred_at,
                         outcome, job_id)
  SELECT machine, entity_id, type, version, event_id, source, merchant_id, data, occurred_at, '${OUTCOME}', job_id
  FROM ws_log WHERE lane = :client_id AND batch = :batch
)
INSERT INTO entity AS e (machine, entity_id, status, last_event, key, version, merchant_id, fields)
SELECT machine, entity_id, status, last_event, key, version, merchant_id, fields
FROM ws_entity WHERE lane = :client_id AND batch = :batch
${ENTITY_UPSERT};
`;

/** Copies every batch into input tables the pgbench script reads, keyed by (lane, batch). */
async function loadWriteSetInput(pool: pg.Pool, lanes: WriteSetBatch[][]): Promise<void> {
  await pool.query(`
    CREATE TABLE ws_key (lane int, batch int, source text COLLATE "C", event_id text COLLATE "C");
    CREATE TABLE ws_log (lane int, batch int, machine text COLLATE "C", entity_id text COLLATE "C", type text,
      version bigint, event_id text, source text, merchant_id text, data jsonb, occurred_at timestamptz(3),
      job_id text);
    CREATE TABLE ws_entity (lane int, batch int, machine text COLLATE "C", entity_id text COLLATE "C",
      status text, last_event text, key bigint, version bigint, merchant_id text COLLATE "C", fields jsonb)`);
  for (const b of lanes.flat()) {
    await pool.query(`INSERT INTO ws_key SELECT $1, $2, * FROM unnest($3::text[], $4::text[])`, [
      b.lane,
      b.batch,
      ...b.keys,
    ]);
    await pool.query(
      `INSERT INTO ws_log SELECT $1, $2, u.*, $12 FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[],
         $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::timestamptz[]) AS u`,
      [b.lane, b.batch, ...b.log, b.jobId],
    );
    await pool.query(
      `INSERT INTO ws_entity SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[],
         $7::bigint[], $8::bigint[], $9::text[], $10::jsonb[])`,
      [b.lane, b.batch, ...b.entities],
    );
  }
  await pool.query(`
    CREATE INDEX ON ws_key (lane, batch);
    CREATE INDEX ON ws_log (lane, batch);
    CREATE INDEX ON ws_entity (lane, batch);
    ANALYZE ws_key, ws_log, ws_entity`);
}

/** Each lane's batches in order on a connection of its own; seconds and CPU as in the other designs. */
async function driveLanes(
  url: string,
  lanes: WriteSetBatch[][],
  cpu: CpuMeter,
): Promise<{ seconds: number; cpu: CpuReport }> {
  const clients = await Promise.all(
    lanes.map(async () => {
      const c = new pg.Client({ connectionString: url, application_name: 'promosync-bench' });
      await c.connect();
      return c;
    }),
  );
  try {
    await cpu.start();
    const t0 = performance.now();
    await Promise.all(
      clients.map(async (c, i) => {
        for (const b of lanes[i]!)
          await c.query({
            name: 'write_set',
            text: WRITE_SET_SQL,
            values: [...b.keys, ...b.log, ...b.entities, b.jobId],
          });
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, cpu: await cpu.stop() };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

/** Rows in promosync's three tables against one log row per event, one key per event id, one row per entity. */
export async function writeSetCounts(pool: pg.Pool, events: PreparedEvent[]): Promise<RowCounts> {
  const keys = new Set(events.filter((e) => e.eventId !== null).map((e) => `${e.source}\u0000${e.eventId}`));
  const entities = new Set(events.map((e) => `${e.machine}\u0000${e.entityId}`));
  const want = { eventLog: events.length, eventKey: keys.size, entity: entities.size };
  const { rows } = await pool.query<{ l: string; k: string; e: string }>(
    `SELECT (SELECT count(*) FROM event_log) AS l, (SELECT count(*) FROM event_key) AS k,
            (SELECT count(*) FROM entity) AS e`,
  );
  const got = { eventLog: Number(rows[0]!.l), eventKey: Number(rows[0]!.k), entity: Number(rows[0]!.e) };
  const ok = got.eventLog === want.eventLog && got.eventKey === want.eventKey && got.entity === want.entity;
  return { ok, got, want };
}

/**
 * The write-set ceiling: the rows promosync itself writes for the input (event log, idempotency
 * keys, entity rows with their attributes), into a freshly migrated database, so tables, indexes
 * and collations are promosync's, by one plain statement per batch: no ranks, no keys compared,
 * no replay. Batches and connections are those of promosync's batched path (its lanes and
 * BATCH_MAX_EVENTS). Driven from Node with `pg` or by pgbench.
 */
export async function writeSet(ctx: BenchContext, driver: 'node' | 'pgbench'): Promise<ScenarioResult> {
  const s = ctx.settings;
  const events = ctx.registry.prepare(ctx.workload.sent, 'bench', false);
  const result: ScenarioResult = {
    id: driver === 'node' ? 'write-set' : 'write-set-pgbench',
    name: `Write set, no logic (the ceiling${driver === 'node' ? '' : ', pgbench'})`,
    count: events.length,
    seconds: 0,
    rate: 0,
    unit: 'events/s',
    notes: [],
  };
  let db: BenchDatabase | undefined;
  try {
    db = await createDatabase(s.serverUrl);
    const pool = benchPool(db.url);
    try {
      const lanes = writeSetBatches(events, s.batchLanes, s.batchMaxEvents);
      const batches = lanes.reduce((n, l) => n + l.length, 0);
      const cpu = new CpuMeter(s.serverUrl, db.name, undefined, () => ({}));
      let run: { seconds: number; cpu: CpuReport };
      if (driver === 'node') run = await driveLanes(db.url, lanes, cpu);
      else {
        await loadWriteSetInput(pool, lanes);
        const viaPgbench = await runPgbench(db.url, WRITE_SET_PGBENCH, cpu, {
          clients: lanes.length,
          transactions: Math.max(...lanes.map((l) => l.length)),
          vars: { batch: -1 },
        });
        result.notes.push(...viaPgbench.notes);
        run = viaPgbench;
      }
      result.seconds = run.seconds;
      result.cpu = run.cpu;
      result.rate = result.count / result.seconds;
      result.notes.push(
        `${batches} statements of ≤${s.batchMaxEvents} events (${s.batchLanes} lanes by entity, one connection each): every event logged, every event id keyed, one entity row per entity and batch, last arrival wins`,
      );
      result.rowCounts = await writeSetCounts(pool, events);
      if (!result.rowCounts.ok) result.error = 'rows missing or extra';
    } finally {
      await pool.end();
    }
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  } finally {
    await db?.drop();
  }
  ctx.log(
    `${result.name}: ${result.error ? `FAILED: ${result.error}` : `${Math.round(result.rate)} ${result.unit}`}`,
  );
  return result;
}

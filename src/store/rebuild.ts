import type { Pool, PoolClient } from 'pg';
import { withTransaction } from './transaction.ts';
import type { EventInput, FieldValue, MachineRegistry, Owner, PreparedEvent } from '../domain/index.ts';
import {
  compareRows,
  decodeFields,
  ownerOf,
  encodeFields,
  FIELD_LIMIT_REASON,
  recomputeRow,
  sqlExactFields,
  PromosyncError,
  type Drift,
  type FieldLimitReplay,
  type RowState,
  type StoredField,
} from '../domain/index.ts';

/** What `rebuild` found for one entity. */
export interface EntityDrift {
  machine: string;
  entityId: string;
  /**
   * - `drift`: the row differs from its log (see `drifts`);
   * - `missing-row`: the log has events but there is no row;
   * - `no-events`: a row with nothing in the log (e.g. a purged log); left alone;
   * - `unreplayable`: the log holds events the machine no longer has; left alone.
   */
  kind: 'drift' | 'missing-row' | 'no-events' | 'unreplayable';
  drifts: Drift[];
  /** Why it cannot be replayed, for `unreplayable`. */
  reason?: string;
  /** Whether `fix` rewrote the row. */
  fixed: boolean;
}

export interface RebuildReport {
  /** Rows and logged events compared, per machine. */
  machines: Array<{ machine: string; rows: number; events: number }>;
  drifted: EntityDrift[];
}

export interface RebuildOptions {
  /** Only this machine. @defaultValue every machine of the registry */
  machine?: string;
  /** Rewrite drifted rows (and recreate missing ones) from the log. @defaultValue false */
  fix?: boolean;
  /** Rows read per snapshot. @defaultValue 500 */
  pageSize?: number;
  /** Called after each page with the rows checked so far. */
  onProgress?: (machine: string, rows: number) => void;
}

interface LogRow {
  id: string;
  entity_id: string;
  type: string;
  version: string | null;
  source: string;
  merchant_id: string | null;
  data: Record<string, FieldValue> | null;
  may_write_for: string[] | null;
  /** Rejected for the entity's field limits: final, it counts for ownership only. */
  held_back: boolean;
}

interface EntityRow {
  entity_id: string;
  status: string;
  last_event: string;
  key: string;
  version: string | null;
  merchant_id: string | null;
  owner_source: string | null;
  owner_key: string | null;
  anomalies: number;
  fields: Record<string, StoredField>;
}

// Field keys go beyond 2^53: read them as text so they stay exact.
const ENTITY_COLUMNS = `entity_id, status, last_event, key::text AS key, version::text AS version, merchant_id,
  owner_source, owner_key::text AS owner_key, anomalies, ${sqlExactFields('entity.fields')} AS fields`;

// Duplicates are read too (see recomputeRow); conflicts never count. A rejection for the
// entity's field limits is final (docs/design.md#attribute-limits): such an event, and any
// repeat of its eventId, counts for ownership, as every rejected event does, and is not
// replayed. Every query reads the log as `l`.
const heldBack = (log: string): string =>
  `(${log}.outcome = 'rejected' AND starts_with(coalesce(${log}.reason, ''), '${FIELD_LIMIT_REASON}'))`;
const LOG_COLUMNS = `l.id::text AS id, l.entity_id, l.type, l.version::text AS version, l.source, l.merchant_id, l.data, l.may_write_for,
  ${heldBack('l')} OR (l.outcome = 'duplicate' AND l.event_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM event_log o WHERE o.machine = l.machine AND o.entity_id = l.entity_id
      AND o.source = l.source AND o.event_id = l.event_id AND ${heldBack('o')})) AS held_back`;
const LOG_FILTER = "outcome <> 'conflict'";

const ownerOfRow = (r: EntityRow): Owner | null =>
  r.owner_source === null || r.owner_key === null
    ? null
    : { source: r.owner_source, key: BigInt(r.owner_key) };

function toRowState(r: EntityRow): RowState {
  return {
    status: r.status,
    lastEvent: r.last_event,
    key: BigInt(r.key),
    version: r.version === null ? null : Number(r.version),
    merchantId: r.merchant_id,
    owner: ownerOfRow(r),
    fields: decodeFields(r.fields),
    anomalies: r.anomalies,
  };
}

/** A logged event prepared as the worker prepared it, with today's ranks. */
function prepareLogged(registry: MachineRegistry, machine: string, e: LogRow): PreparedEvent {
  const input: EventInput = {
    machine,
    entityId: e.entity_id,
    type: e.type,
    ...(e.version !== null ? { version: Number(e.version) } : {}),
    ...(e.merchant_id !== null ? { merchantId: e.merchant_id } : {}),
    ...(e.data !== null ? { data: e.data } : {}),
  };
  const event = registry.prepare([input], e.source, false)[0]!;
  return e.may_write_for === null || e.may_write_for.length === 0
    ? event
    : { ...event, mayWriteFor: e.may_write_for };
}

/**
 * The row an entity's log (conflicts left out) recomputes to; a row stored before ownership
 * existed keeps its owner (owner key 0 pins it).
 */
function recompute(
  registry: MachineRegistry,
  machine: string,
  row: EntityRow | undefined,
  log: LogRow[],
  limits: Pick<FieldLimitReplay, 'entity' | 'onHeldBack'> = {},
): RowState | undefined {
  const events = log.map((e) => prepareLogged(registry, machine, e));
  const stored = row ? ownerOfRow(row) : null;
  const owner = ownerOf(events, stored?.key === 0n ? stored : null);
  return recomputeRow(events, (from, to) => registry.isReachable(machine, from, to), owner, {
    ...limits,
    heldBack: (i) => log[i]!.held_back,
  });
}

/** Compares one entity's row with its log; undefined when they agree. */
function check(
  registry: MachineRegistry,
  machine: string,
  entityId: string,
  row: EntityRow | undefined,
  log: LogRow[],
): { drift: EntityDrift; recomputed: RowState | undefined } | undefined {
  const base = { machine, entityId, drifts: [] as Drift[], fixed: false };
  let recomputed: RowState | undefined;
  try {
    recomputed = recompute(registry, machine, row, log);
  } catch (err) {
    const reason =
      err instanceof PromosyncError
        ? err.problems.map((p) => p.message).join('; ') || err.message
        : String(err);
    return { drift: { ...base, kind: 'unreplayable', reason }, recomputed: undefined };
  }
  if (!row) return recomputed ? { drift: { ...base, kind: 'missing-row' }, recomputed } : undefined;
  if (!recomputed) return { drift: { ...base, kind: 'no-events' }, recomputed };
  const drifts = compareRows(toRowState(row), recomputed);
  return drifts.length === 0 ? undefined : { drift: { ...base, kind: 'drift', drifts }, recomputed };
}

function groupLog(rows: LogRow[]): Map<string, LogRow[]> {
  const by = new Map<string, LogRow[]>();
  for (const r of rows) {
    const list = by.get(r.entity_id);
    if (list) list.push(r);
    else by.set(r.entity_id, [r]);
  }
  return by;
}

/** Runs `fn` in a read-only REPEATABLE READ transaction: rows and log from one snapshot. */
function snapshot<T>(pool: Pool, fn: (c: PoolClient) => Promise<T>): Promise<T> {
  return withTransaction(pool, fn, { begin: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' });
}

/** Reads one entity's row (locking it) and its log inside `client`'s transaction. */
async function readLocked(
  client: PoolClient,
  machine: string,
  entityId: string,
): Promise<{ row: EntityRow | undefined; log: LogRow[] }> {
  const rows = await client.query<EntityRow>(
    `SELECT ${ENTITY_COLUMNS} FROM entity WHERE machine = $1 AND entity_id = $2 FOR UPDATE`,
    [machine, entityId],
  );
  const log = await client.query<LogRow>(
    `SELECT ${LOG_COLUMNS} FROM event_log l WHERE l.machine = $1 AND l.entity_id = $2 AND l.${LOG_FILTER} ORDER BY l.id`,
    [machine, entityId],
  );
  return { row: rows.rows[0], log: log.rows };
}

/** Writes a recomputed row: over the stored one (`update`), or as a new one. */
async function writeRow(
  client: PoolClient,
  machine: string,
  entityId: string,
  r: RowState,
  update: boolean,
): Promise<boolean> {
  const values = [
    machine,
    entityId,
    r.status,
    r.lastEvent,
    r.key.toString(),
    r.version,
    r.merchantId,
    encodeFields(r.fields),
    r.anomalies,
    r.owner?.source ?? null,
    r.owner?.key.toString() ?? null,
  ];
  const written = update
    ? await client.query(
        `UPDATE entity SET status = $3, last_event = $4, key = $5, version = $6, merchant_id = $7,
           fields = $8::jsonb, anomalies = $9, owner_source = $10, owner_key = $11, updated_at = now(),
           change_xid = pg_current_xact_id()
         WHERE machine = $1 AND entity_id = $2`,
        values,
      )
    : await client.query(
        `INSERT INTO entity (machine, entity_id, status, last_event, key, version, merchant_id, fields, anomalies,
                             owner_source, owner_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11) ON CONFLICT (machine, entity_id) DO NOTHING`,
        values,
      );
  return written.rowCount === 1;
}

/**
 * Re-checks one entity under its row lock and rewrites the row from the log. Any batch
 * that would change the row waits for the lock, so nothing applied meanwhile is lost.
 * @returns whether the row was written.
 */
async function fixEntity(
  pool: Pool,
  registry: MachineRegistry,
  machine: string,
  entityId: string,
): Promise<boolean> {
  return withTransaction(pool, async (client) => {
    const { row, log } = await readLocked(client, machine, entityId);
    const found = check(registry, machine, entityId, row, log);
    const r = found?.recomputed;
    if (!found || !r || (found.drift.kind !== 'drift' && found.drift.kind !== 'missing-row')) return false;
    return writeRow(client, machine, entityId, r, found.drift.kind === 'drift');
  });
}

/** What {@link refoldEntity} did. */
export interface Refold {
  /** The row as written; undefined when no event creates it. */
  row: RowState | undefined;
  /** Events the recomputation rejected for the entity's field limits, with the reason. */
  heldBack: Array<{ event: PreparedEvent; reason: string }>;
}

/**
 * Recomputes an entity's row from its log inside the caller's transaction, after the apply
 * statement moved its ownership to another source (docs/design.md#ownership): the former
 * owner's events no longer count, the new owner's rejected ones now do. The events are held to
 * the entity's field limits one by one, since no statement checked them together; those held
 * back are logged as rejected for the limits, so that `rebuild` finds the same row. The
 * statement holds the row's lock until the caller commits.
 */
export async function refoldEntity(
  client: PoolClient,
  registry: MachineRegistry,
  machine: string,
  entityId: string,
): Promise<Refold> {
  const { row, log } = await readLocked(client, machine, entityId);
  const held: Array<{ index: number; reason: string }> = [];
  const r = recompute(registry, machine, row, log, {
    entity: registry.limits.entity,
    onHeldBack: (index, reason) => held.push({ index, reason }),
  });
  if (held.length > 0) {
    await client.query(
      `UPDATE event_log SET outcome = 'rejected', reason = u.reason
       FROM unnest($1::bigint[], $2::text[]) AS u(id, reason) WHERE event_log.id = u.id`,
      [held.map((h) => log[h.index]!.id), held.map((h) => h.reason)],
    );
  }
  if (r && row) await writeRow(client, machine, entityId, r, true);
  // Only the events held back are prepared again, to report them (usually none).
  const heldBack = held.map((h) => ({
    event: prepareLogged(registry, machine, log[h.index]!),
    reason: h.reason,
  }));
  return { row: r, heldBack };
}

/**
 * Recomputes every row from the event log with the apply rule and reports where the stored
 * row differs (a row edited behind promosync's back, a restored backup, a bug). With `fix`,
 * drifted rows are rewritten and missing ones recreated, each under its row lock, so it is
 * safe while workers run. Rows are read in pages, each page with its log from one snapshot.
 */
export async function rebuildRows(
  pool: Pool,
  registry: MachineRegistry,
  opts: RebuildOptions = {},
): Promise<RebuildReport> {
  const names = opts.machine === undefined ? registry.list().map((i) => i.analysis.name) : [opts.machine];
  for (const n of names)
    if (!registry.get(n)) throw new PromosyncError('unknown_machine', `unknown machine "${n}"`);
  const pageSize = opts.pageSize ?? 500;
  const report: RebuildReport = { machines: [], drifted: [] };
  for (const machine of names) {
    const stats = { machine, rows: 0, events: 0 };
    const found: EntityDrift[] = [];
    for (let after = ''; ;) {
      const page = await snapshot(pool, async (c) => {
        const rows = await c.query<EntityRow>(
          `SELECT ${ENTITY_COLUMNS} FROM entity WHERE machine = $1 AND entity_id > $2 ORDER BY entity_id LIMIT $3`,
          [machine, after, pageSize],
        );
        const ids = rows.rows.map((r) => r.entity_id);
        const log = await c.query<LogRow>(
          `SELECT ${LOG_COLUMNS} FROM event_log l
           WHERE l.machine = $1 AND l.entity_id = ANY($2::text[]) AND l.${LOG_FILTER} ORDER BY l.entity_id, l.id`,
          [machine, ids],
        );
        return { rows: rows.rows, log: groupLog(log.rows), events: log.rows.length };
      });
      stats.rows += page.rows.length;
      stats.events += page.events;
      for (const row of page.rows) {
        const d = check(registry, machine, row.entity_id, row, page.log.get(row.entity_id) ?? []);
        if (d) found.push(d.drift);
      }
      opts.onProgress?.(machine, stats.rows);
      if (page.rows.length < pageSize) break;
      after = page.rows.at(-1)!.entity_id;
    }
    // Entities the log knows and the table does not.
    const orphans = await snapshot(pool, async (c) => {
      const log = await c.query<LogRow>(
        `SELECT ${LOG_COLUMNS} FROM event_log l
         WHERE l.machine = $1 AND l.${LOG_FILTER}
           AND NOT EXISTS (SELECT 1 FROM entity e WHERE e.machine = l.machine AND e.entity_id = l.entity_id)
         ORDER BY l.entity_id, l.id`,
        [machine],
      );
      return groupLog(log.rows);
    });
    for (const [entityId, log] of orphans) {
      stats.events += log.length;
      const d = check(registry, machine, entityId, undefined, log);
      if (d) found.push(d.drift);
    }
    if (opts.fix) {
      for (const d of found) {
        if (d.kind === 'drift' || d.kind === 'missing-row')
          d.fixed = await fixEntity(pool, registry, machine, d.entityId);
      }
    }
    report.machines.push(stats);
    for (const d of found) report.drifted.push(d);
  }
  return report;
}

import type pg from 'pg';
import {
  attributesOf,
  mergeEvent,
  type EntityState,
  type FieldValue,
  type MachineRegistry,
} from '../src/domain/index.ts';
import type { Workload } from './workload.ts';

/** The parts of a row the convergence check compares (as the property test does). */
export interface Comparable {
  status: string;
  lastEvent: string;
  version: number | null;
  merchantId: string | null;
  attributes: Record<string, FieldValue>;
}

/** The state of each entity after applying its delivered events one by one, in history order. */
export function expectedStates(
  registry: MachineRegistry,
  workload: Workload,
  source: string,
): Map<string, Comparable> {
  const out = new Map<string, Comparable>();
  for (const h of workload.histories) {
    const seen = new Map<string, string>();
    let state: EntityState | undefined;
    for (const e of registry.prepare(h.delivered, source, false)) {
      state = mergeEvent(state, e, seen, (a, b) => registry.isReachable(e.machine, a, b)).state;
    }
    if (state)
      out.set(h.entityId, {
        status: state.status,
        lastEvent: state.lastEvent,
        version: state.version,
        merchantId: state.merchantId,
        attributes: attributesOf(state),
      });
  }
  return out;
}

/** The columns of an entity row the convergence check reads. */
export interface ComparedRow {
  entity_id: string;
  status: string;
  last_event: string;
  version: string | null;
  merchant_id: string | null;
  fields: Record<string, { v: FieldValue }>;
}

/** The compared parts of a stored row. */
export function comparableRow(r: ComparedRow): Comparable {
  return {
    status: r.status,
    lastEvent: r.last_event,
    version: r.version === null ? null : Number(r.version),
    merchantId: r.merchant_id,
    attributes: Object.fromEntries(Object.entries(r.fields).map(([k, f]) => [k, f.v])),
  };
}

function sameState(a: Comparable, b: Comparable): boolean {
  if (a.status !== b.status || a.lastEvent !== b.lastEvent) return false;
  if (a.version !== b.version || a.merchantId !== b.merchantId) return false;
  const ka = Object.keys(a.attributes);
  if (ka.length !== Object.keys(b.attributes).length) return false;
  return ka.every((k) => Object.is(a.attributes[k], b.attributes[k]));
}

/** What the check found; `ok` only when every entity converged and every event was logged. */
export interface ConvergenceReport {
  ok: boolean;
  entities: number;
  wrong: number;
  missing: number;
  unexpected: number;
  /** event_log rows, against the events sent. */
  logged: number;
  sent: number;
  examples: string[];
}

/**
 * Reads every row of `machine` page by page and compares it with `expectedOf(entityId)`;
 * rows nobody expects and expected entities without a row are both failures.
 */
export async function verifyConvergence(
  pool: pg.Pool,
  machine: string,
  expectedCount: number,
  expectedOf: (entityId: string) => Comparable | undefined,
  sent: number,
): Promise<ConvergenceReport> {
  let last = '';
  let seen = 0;
  let wrong = 0;
  let unexpected = 0;
  const examples: string[] = [];
  for (;;) {
    const { rows } = await pool.query<ComparedRow>(
      `SELECT entity_id, status, last_event, version, merchant_id, fields FROM entity
       WHERE machine = $1 AND entity_id > $2 ORDER BY entity_id LIMIT 20000`,
      [machine, last],
    );
    if (rows.length === 0) break;
    for (const r of rows) {
      const expected = expectedOf(r.entity_id);
      if (!expected) {
        unexpected += 1;
        continue;
      }
      seen += 1;
      const actual = comparableRow(r);
      if (!sameState(actual, expected)) {
        wrong += 1;
        if (examples.length < 5)
          examples.push(
            `${r.entity_id}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`,
          );
      }
    }
    last = rows[rows.length - 1]!.entity_id;
  }
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM event_log');
  const logged = Number(rows[0]!.n);
  const missing = expectedCount - seen;
  return {
    ok: wrong === 0 && missing === 0 && unexpected === 0 && logged === sent,
    entities: expectedCount,
    wrong,
    missing,
    unexpected,
    logged,
    sent,
    examples,
  };
}

/** Entities whose status differs from the expected one, for the designs that keep only a status. */
export async function wrongStatuses(
  pool: pg.Pool,
  table: string,
  expected: Map<string, Comparable>,
): Promise<number> {
  const { rows } = await pool.query<{ entity_id: string; status: string }>(
    `SELECT entity_id, status FROM ${table}`,
  );
  const got = new Map(rows.map((r) => [r.entity_id, r.status]));
  let wrong = 0;
  for (const [id, e] of expected) if (got.get(id) !== e.status) wrong += 1;
  return wrong;
}

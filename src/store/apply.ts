import type { Pool } from 'pg';
import type { Logger } from 'pino';
import type { MachineRegistry, PreparedEvent } from '../domain/index.ts';
import type { Outcome } from '../domain/index.ts';
import { APPLY_SQL } from './apply-sql.ts';
import { isRetryable, isTransient } from './pg-errors.ts';
import { CHANGES_CHANNEL } from './changes.ts';

export { APPLY_SQL };

/** The outcome of one event and its entity's status after the batch. */
export interface AppliedEvent {
  outcome: Outcome;
  anomaly: boolean;
  status: string | null;
}

/** An event on its way to the store, with the job that carried it. */
export interface BatchEvent {
  event: PreparedEvent;
  jobId: string | null;
}

/** What the apply statement needs to know about each machine, as its $13 parameter. */
export function machinesParam(registry: MachineRegistry): string {
  const out: Record<string, unknown> = {};
  for (const info of registry.list()) {
    const a = info.analysis;
    out[a.name] = {
      ordering: a.ordering,
      targets: Object.fromEntries(a.events.map((e) => [String(e.rank), e.target])),
      reach: a.reachable,
    };
  }
  return JSON.stringify(out);
}

const QUOTE_OR_BACKSLASH = /["\\]/;
/** A JSON escape other than \" and \\: one the array syntax would read differently. */
const OTHER_ESCAPE = /\\[^"\\]/;

/**
 * A Postgres array literal (`{"a","b",NULL}`) of strings and numbers, as `$n::text[]` and its
 * kin read it. It runs while the database waits for the next batch, so the common case is
 * JSON.stringify's: its array syntax differs from Postgres' only in the brackets and in
 * escapes other than \" and \\ (control characters), and those take the slow path.
 */
export function arrayLiteral(items: readonly (string | number | null)[]): string {
  const json = JSON.stringify(items);
  if (!OTHER_ESCAPE.test(json)) return `{${json.slice(1, -1)}}`;
  const parts = new Array<string>(items.length);
  for (let i = 0; i < items.length; i++) {
    const v = items[i];
    parts[i] =
      v === null || v === undefined
        ? 'NULL'
        : typeof v === 'number'
          ? String(v)
          : QUOTE_OR_BACKSLASH.test(v)
            ? `"${v.replace(/["\\]/g, '\\$&')}"`
            : `"${v}"`;
  }
  return `{${parts.join(',')}}`;
}

/**
 * The parameters of {@link APPLY_SQL} for a batch. Events go over grouped by entity, the
 * entities sorted by (machine, entityId) and each entity's events in arrival order, so the
 * statement's window functions find their input already in order; the idempotency keys to
 * claim go sorted by (source, eventId). Both orders are the same in every worker, which is
 * what keeps concurrent batches from deadlocking on rows or keys.
 */
export function applyParams(batch: BatchEvent[], machines: string): string[] {
  const n = batch.length;
  const events = batch.map((b) => b.event);
  // Entities in (machine, entityId) order, each one's events in arrival order.
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => {
    const x = events[a]!;
    const y = events[b]!;
    if (x.machine !== y.machine) return x.machine < y.machine ? -1 : 1;
    if (x.entityId !== y.entityId) return x.entityId < y.entityId ? -1 : 1;
    return a - b;
  });
  // The first event of the batch with each (source, eventId), in arrival order.
  const first = new Array<boolean>(n);
  const seen = new Set<string>();
  const keys: PreparedEvent[] = [];
  for (let i = 0; i < n; i++) {
    const e = events[i]!;
    if (e.eventId === null) first[i] = true;
    else {
      const id = `${e.source}\u0000${e.eventId}`;
      first[i] = !seen.has(id);
      if (first[i]) {
        seen.add(id);
        keys.push(e);
      }
    }
  }
  keys.sort((x, y) =>
    x.source !== y.source
      ? x.source < y.source
        ? -1
        : 1
      : x.eventId! < y.eventId!
        ? -1
        : x.eventId! > y.eventId!
          ? 1
          : 0,
  );

  const cols = Array.from({ length: 15 }, () => new Array<string | number | null>(n));
  const entMachines: string[] = [];
  const entIds: string[] = [];
  for (let at = 0; at < n; at++) {
    const i = order[at]!;
    const e = events[i]!;
    const g = entIds.length - 1;
    if (g < 0 || entIds[g] !== e.entityId || entMachines[g] !== e.machine) {
      entMachines.push(e.machine);
      entIds.push(e.entityId);
    }
    cols[0]![at] = e.machine;
    cols[1]![at] = e.entityId;
    cols[2]![at] = e.type;
    cols[3]![at] = e.key.toString();
    cols[4]![at] = e.version;
    cols[5]![at] = e.eventId;
    cols[6]![at] = e.source;
    cols[7]![at] = e.merchantId;
    cols[8]![at] = e.data === null ? null : JSON.stringify(e.data);
    cols[9]![at] = e.target;
    cols[10]![at] = e.occurredAt;
    cols[11]![at] = batch[i]!.jobId;
    cols[12]![at] = i;
    cols[13]![at] = entIds.length - 1;
    cols[14]![at] = first[i] ? 't' : 'f';
  }
  const lists = cols.map(arrayLiteral);
  return [
    ...lists.slice(0, 12),
    machines,
    ...lists.slice(12),
    arrayLiteral(entMachines),
    arrayLiteral(entIds),
    arrayLiteral(keys.map((k) => k.source)),
    arrayLiteral(keys.map((k) => k.eventId)),
  ];
}

const MAX_ATTEMPTS = 8;

/**
 * COMMIT, preceded by one NOTIFY naming the machines whose rows the batch may have changed
 * (events applied, or stale ones that can still set fields), so watchers wake up at once
 * instead of at their next poll (docs/design.md#changes). Postgres delivers it at commit, in
 * the same round trip.
 */
export function commitAndNotify(batch: BatchEvent[], rows: { idx: number; outcome: Outcome }[]): string {
  const machines = new Set<string>();
  for (const r of rows)
    if (r.outcome === 'applied' || r.outcome === 'stale') machines.add(batch[r.idx]!.event.machine);
  if (machines.size === 0) return 'COMMIT';
  const payload = [...machines].sort().join(',').replaceAll("'", "''");
  return `NOTIFY ${CHANGES_CHANNEL}, '${payload}'; COMMIT`;
}

/** The statement failed but its connection is fine: an SQLSTATE that is not about the connection. */
function statementFailed(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !isTransient(err);
}

/**
 * Opens the transaction of one apply with planner settings scoped to it. JIT compiling pays
 * off for long analytical queries, never for this statement: its estimates over CTEs can look
 * large enough to trigger it, and compiling then costs seconds per batch. Merge joins would
 * sort the batch's rows on text keys where hashing them is cheaper: the statement's inputs are
 * in memory and not in that order.
 */
export const APPLY_BEGIN = 'BEGIN; SET LOCAL jit = off; SET LOCAL enable_mergejoin = off';

/**
 * Applies a batch of events in one atomic statement (see {@link APPLY_SQL}), retrying on
 * deadlocks, serialization failures and concurrent creation. Results are in input order.
 */
export class Applier {
  private readonly param: string;

  constructor(
    private readonly pool: Pool,
    registry: MachineRegistry,
    private readonly logger: Logger,
  ) {
    this.param = machinesParam(registry);
  }

  async apply(batch: BatchEvent[]): Promise<AppliedEvent[]> {
    if (batch.length === 0) return [];
    const values = applyParams(batch, this.param);
    // One connection for every attempt. pool.query drops its connection on any error, so
    // each retry after a conflict would pay for a new backend and prepare the statement again.
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // A checked-out client reports a dropped connection as an 'error' event, which would end
    // the process if nobody listened; the pending query rejects as well and is handled below.
    const onError = (err: Error): void => {
      broken = err;
    };
    client.on('error', onError);
    try {
      for (let attempt = 1; ; attempt++) {
        let open = false;
        try {
          await client.query(APPLY_BEGIN);
          open = true;
          const res = await client.query<{
            idx: number;
            outcome: Outcome;
            anomaly: boolean;
            status: string | null;
          }>({
            name: 'promosync_apply',
            text: APPLY_SQL,
            values,
          });
          await client.query(commitAndNotify(batch, res.rows));
          open = false;
          return res.rows.map((r) => ({ outcome: r.outcome, anomaly: r.anomaly, status: r.status }));
        } catch (err) {
          if (!statementFailed(err)) broken = err instanceof Error ? err : new Error(String(err));
          else if (open) {
            await client.query('ROLLBACK').catch((e: unknown) => {
              broken = e instanceof Error ? e : new Error(String(e));
            });
          }
          if (!isRetryable(err) || attempt >= MAX_ATTEMPTS || broken) throw err;
          const delay = Math.min(200, 2 ** attempt) * (0.5 + Math.random());
          this.logger.debug({ err, attempt, delay }, 'apply conflicted, retrying');
          await new Promise((r) => setTimeout(r, delay));
        }
      }
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }
}

import type { Pool } from 'pg';
import type { Logger } from 'pino';
import type { MachineRegistry, PreparedEvent } from '../domain/index.ts';
import type { Outcome } from '../domain/index.ts';
import { APPLY_SQL } from './apply-sql.ts';
import { isRetryable, isTransient } from './pg-errors.ts';

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

/**
 * A Postgres array literal (`{"a","b",NULL}`) of strings and numbers, as `$n::text[]` and its
 * kin read it. Built in one pass: node-postgres' own conversion takes several times as long,
 * and it runs while the database waits for the next batch.
 */
export function arrayLiteral(items: readonly (string | number | null)[]): string {
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
  const groups = new Map<string, number[]>();
  const first = new Array<string>(n);
  const seenIds = new Set<string>();
  const keys: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    const e = batch[i]!.event;
    const entity = `${e.machine}\u0000${e.entityId}`;
    const group = groups.get(entity);
    if (group) group.push(i);
    else groups.set(entity, [i]);
    let isFirst = true;
    if (e.eventId !== null) {
      const id = `${e.source}\u0000${e.eventId}`;
      isFirst = !seenIds.has(id);
      if (isFirst) {
        seenIds.add(id);
        keys.push([e.source, e.eventId]);
      }
    }
    first[i] = isFirst ? 't' : 'f';
  }
  const entities = [...groups.keys()].sort();
  keys.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));

  const cols = Array.from({ length: 15 }, () => new Array<string | number | null>(n));
  const entMachines = new Array<string>(entities.length);
  const entIds = new Array<string>(entities.length);
  let at = 0;
  entities.forEach((entity, g) => {
    const sep = entity.indexOf('\u0000');
    entMachines[g] = entity.slice(0, sep);
    entIds[g] = entity.slice(sep + 1);
    for (const i of groups.get(entity)!) {
      const { event: e, jobId } = batch[i]!;
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
      cols[11]![at] = jobId;
      cols[12]![at] = i;
      cols[13]![at] = g;
      cols[14]![at] = first[i]!;
      at++;
    }
  });
  const lists = cols.map(arrayLiteral);
  return [
    ...lists.slice(0, 12),
    machines,
    ...lists.slice(12),
    arrayLiteral(entMachines),
    arrayLiteral(entIds),
    arrayLiteral(keys.map((k) => k[0])),
    arrayLiteral(keys.map((k) => k[1])),
  ];
}

const MAX_ATTEMPTS = 8;

/** The statement failed but its connection is fine: an SQLSTATE that is not about the connection. */
function statementFailed(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !isTransient(err);
}

/**
 * Applies a batch of events in one atomic statement (see {@link APPLY_SQL}), retrying on
 * deadlocks, serialization failures and concurrent creation. Results are in input order.
 */
export class Applier {
  private readonly param: string;
  /** Connections this applier has set up (see {@link Applier.apply}). */
  private readonly ready = new WeakSet<object>();

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
      if (!this.ready.has(client)) {
        // JIT compiling pays off for long analytical queries, never for this one: its
        // estimates over CTEs can look large enough to trigger it, and compiling then costs
        // seconds per batch.
        await client.query('SET jit = off');
        this.ready.add(client);
      }
      for (let attempt = 1; ; attempt++) {
        try {
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
          return res.rows.map((r) => ({ outcome: r.outcome, anomaly: r.anomaly, status: r.status }));
        } catch (err) {
          if (!statementFailed(err)) broken = err instanceof Error ? err : new Error(String(err));
          if (!isRetryable(err) || attempt >= MAX_ATTEMPTS) throw err;
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

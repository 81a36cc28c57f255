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

/** The parameters of {@link APPLY_SQL} for a batch: parallel arrays, then the machines' JSON. */
export function applyParams(batch: BatchEvent[], machines: string): string[] {
  const n = batch.length;
  const cols = Array.from({ length: 12 }, () => new Array<string | number | null>(n));
  batch.forEach(({ event: e, jobId }, i) => {
    cols[0]![i] = e.machine;
    cols[1]![i] = e.entityId;
    cols[2]![i] = e.type;
    cols[3]![i] = e.key.toString();
    cols[4]![i] = e.version;
    cols[5]![i] = e.eventId;
    cols[6]![i] = e.source;
    cols[7]![i] = e.merchantId;
    cols[8]![i] = e.data === null ? null : JSON.stringify(e.data);
    cols[9]![i] = e.target;
    cols[10]![i] = e.occurredAt;
    cols[11]![i] = jobId;
  });
  return [...cols.map(arrayLiteral), machines];
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

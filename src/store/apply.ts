import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import { contentHash, type MachineRegistry, type Outcome } from '../domain/index.ts';
import { APPLY_SQL, applyParams, CONCURRENT, machinesParam, type BatchEvent } from './apply-sql.ts';
import { isRetryable, isTransient } from './pg-errors.ts';
import { refoldEntity, type Refold } from './rebuild.ts';
import { CHANGES_CHANNEL } from './changes.ts';

export {
  APPLY_SQL,
  APPLY_PARAMS,
  applyParams,
  arrayLiteral,
  machinesParam,
  type BatchEvent,
} from './apply-sql.ts';

/** The outcome of one event and its entity's status after the batch. */
export interface AppliedEvent {
  outcome: Outcome;
  anomaly: boolean;
  status: string | null;
  /** Why it was `rejected` or a `conflict`. */
  reason?: string;
  /** An admin event's: the source owning the entity, which it acted for (docs/design.md#ownership). */
  actedFor?: string;
}

/** One row of the apply statement's result, in arrival order. */
interface ApplyRow {
  idx: number;
  outcome: Outcome;
  anomaly: boolean;
  status: string | null;
  reason: string | null;
  acted_for: string | null;
  /** The batch moved the entity's owner to another source: recompute its row. */
  refold: boolean;
}

const MAX_ATTEMPTS = 8;

/** Why an apply statement was aborted and run again. */
export type RetryReason = 'entity_created' | 'event_id_claimed' | 'deadlock' | 'serialization' | 'other';

/** The {@link RetryReason} of a retryable error. */
export function retryReason(err: unknown): RetryReason {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (message === CONCURRENT.create) return 'entity_created';
  if (message === CONCURRENT.claim) return 'event_id_claimed';
  if (code === '40P01') return 'deadlock';
  if (code === '40001') return 'serialization';
  return 'other';
}

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

/** The first key of the transaction-level advisory locks a worker's statements take (the second is the lock). */
export const APPLY_LOCK_SPACE = 0x7073_0001;

/**
 * {@link APPLY_BEGIN}, then the apply locks in the order given (sorted by the caller): taken
 * before any row, they make statements that could meet on an entity wait for each other whole.
 */
export function applyBegin(locks: readonly number[]): string {
  const take = locks.map((k) => `pg_advisory_xact_lock(${APPLY_LOCK_SPACE}, ${Math.trunc(k)})`);
  return take.length === 0 ? APPLY_BEGIN : `${APPLY_BEGIN}; SELECT ${take.join(', ')}`;
}

/**
 * Applies a batch of events in one atomic statement (see {@link APPLY_SQL}), retrying on
 * deadlocks, serialization failures and concurrent creation. Results are in input order.
 */
export class Applier {
  private readonly param: string;

  constructor(
    private readonly pool: Pool,
    private readonly registry: MachineRegistry,
    private readonly logger: Logger,
    /** Told of each statement aborted and run again (promosync_apply_retries_total). */
    private readonly onRetry: (reason: RetryReason) => void = () => {},
  ) {
    this.param = machinesParam(registry);
  }

  /**
   * Recomputes, in the statement's transaction, the rows whose owner the batch moved to
   * another source, and reports their status as recomputed. A recomputation holds the events
   * to the entity's field limits one by one: an event of the batch it holds back is reported
   * rejected, with the reason.
   */
  private async refold(
    client: PoolClient,
    batch: BatchEvent[],
    rows: readonly ApplyRow[],
    out: AppliedEvent[],
  ): Promise<void> {
    const done = new Map<string, Refold>();
    for (const r of rows) {
      if (!r.refold) continue;
      const { machine, entityId } = batch[r.idx]!.event;
      const k = `${machine}\u0000${entityId}`;
      if (done.has(k)) continue;
      const refold = await refoldEntity(client, this.registry, machine, entityId);
      done.set(k, refold);
      this.logger.info(
        { machine, entityId, owner: refold.row?.owner?.source, heldBack: refold.heldBack.length },
        'owner moved, row recomputed from its log',
      );
    }
    // The events the recomputations held back, by source and content, each hashed once.
    const heldBack = new Map<string, string>();
    for (const refold of done.values())
      for (const h of refold.heldBack)
        heldBack.set(`${h.event.source}\u0000${contentHash(h.event)}`, h.reason);
    rows.forEach((r, i) => {
      const { event } = batch[r.idx]!;
      const refold = done.get(`${event.machine}\u0000${event.entityId}`);
      if (!refold) return;
      out[i]!.status = refold.row?.status ?? null;
      if (heldBack.size === 0 || (out[i]!.outcome !== 'applied' && out[i]!.outcome !== 'stale')) return;
      const reason = heldBack.get(`${event.source}\u0000${contentHash(event)}`);
      if (reason !== undefined) {
        out[i]!.outcome = 'rejected';
        out[i]!.anomaly = false;
        out[i]!.reason = reason;
      }
    });
  }

  /**
   * `locks`: advisory locks to take first, sorted (the worker's lane and partitions, see
   * `applyLocks` in src/queue/worker.ts); none for a caller that applies alone.
   */
  async apply(batch: BatchEvent[], locks: readonly number[] = []): Promise<AppliedEvent[]> {
    if (batch.length === 0) return [];
    const values = applyParams(batch, this.param);
    const begin = applyBegin(locks);
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
          // Open from here: if taking a lock fails, the transaction must still be rolled back.
          open = true;
          await client.query(begin);
          const res = await client.query<ApplyRow>({ name: 'promosync_apply', text: APPLY_SQL, values });
          const out = res.rows.map((r): AppliedEvent => ({
            outcome: r.outcome,
            anomaly: r.anomaly,
            status: r.status,
            ...(r.reason === null ? {} : { reason: r.reason }),
            ...(r.acted_for === null ? {} : { actedFor: r.acted_for }),
          }));
          if (res.rows.some((r) => r.refold)) await this.refold(client, batch, res.rows, out);
          await client.query(commitAndNotify(batch, res.rows));
          open = false;
          return out;
        } catch (err) {
          if (!statementFailed(err)) broken = err instanceof Error ? err : new Error(String(err));
          else if (open) {
            await client.query('ROLLBACK').catch((e: unknown) => {
              broken = e instanceof Error ? e : new Error(String(e));
            });
          }
          if (!isRetryable(err) || attempt >= MAX_ATTEMPTS || broken) throw err;
          this.onRetry(retryReason(err));
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

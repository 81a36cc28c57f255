import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { PromosyncError } from '../domain/index.ts';
import type { Outcome } from '../domain/index.ts';
import type { MachineRegistry } from '../domain/index.ts';
import type { AppliedEvent, BatchEvent } from '../store/index.ts';
import { isDataError, isTransient } from '../store/index.ts';
import type { Metrics } from '../observability/index.ts';
import { Batcher } from './batcher.ts';
import { readJobData, type EventResult, type JobResult } from './job.ts';

/** Anything that applies a batch: the store's Applier. */
export interface BatchApplier {
  apply(batch: BatchEvent[]): Promise<AppliedEvent[]>;
}

export interface EventWorkerOptions {
  connection: Redis;
  queueName: string;
  registry: MachineRegistry;
  applier: BatchApplier;
  logger: Logger;
  metrics?: Metrics;
  /** Jobs processed at once. @defaultValue 64 */
  concurrency?: number;
  /** @defaultValue 2000 */
  batchMaxEvents?: number;
  /** @defaultValue 5 */
  batchFlushMs?: number;
  /**
   * Apply statements running at once; work that arrives meanwhile grows the next batch. Two
   * statements that create the same new entity at once make one abort and run again (see
   * APPLY_SQL), which on shuffled input cost more than the overlap gained: one at a time
   * measured twice the throughput of two (docs/performance.md).
   * @defaultValue 1
   */
  batchMaxInFlight?: number;
  /**
   * Lanes: each entity belongs to one lane (by a hash of its id), each lane folds and applies
   * its own batches. Lanes never share an entity, so their statements never collide on a new
   * row, and several lanes keep several Postgres backends busy at once.
   * @defaultValue 1 (the `BATCH_LANES` setting defaults to 2)
   */
  lanes?: number;
  /** Longest delay between two tries while the database is unreachable. @defaultValue 30000 */
  maxRetryDelayMs?: number;
  /**
   * How long this worker's lock on a job lasts unless renewed (it renews at half that). A job
   * whose worker died is taken up again once its lock expired and a stalled check ran.
   * @defaultValue 30000
   */
  lockDurationMs?: number;
  /** How often to look for stalled jobs (their worker died) and queue them again. @defaultValue 30000 */
  stalledIntervalMs?: number;
  /**
   * Times a job may stall before BullMQ fails it for good. Applying a job again is harmless
   * (idempotent, order-free), so this only needs to stop a job that keeps killing its worker;
   * BullMQ's own default of 1 would fail a job whose worker was killed twice.
   * @defaultValue 10
   */
  maxStalledCount?: number;
}

/**
 * Consumes `status-events`: validates each job, folds the events of concurrent jobs into
 * one apply per flush, and resolves each job with its own outcomes. Bad jobs fail at once
 * (UnrecoverableError, kept in the failed set); while the database is unreachable jobs are
 * delayed with backoff, without using up their attempts, so nothing is dropped.
 */
export class EventWorker {
  private worker: Worker | undefined;
  private readonly lanes: Batcher<BatchEvent, AppliedEvent>[];

  constructor(private readonly opts: EventWorkerOptions) {
    this.lanes = Array.from(
      { length: Math.max(1, opts.lanes ?? 1) },
      () =>
        new Batcher<BatchEvent, AppliedEvent>({
          maxItems: opts.batchMaxEvents ?? 2000,
          flushMs: opts.batchFlushMs ?? 5,
          maxInFlight: opts.batchMaxInFlight ?? 1,
          run: (items) => this.applyTimed(items),
          isolate: (err) => !isTransient(err),
        }),
    );
  }

  /** Applies a job's events through the lanes of their entities; outputs in input order. */
  private async applyInLanes(batch: BatchEvent[]): Promise<AppliedEvent[]> {
    if (this.lanes.length === 1) return this.lanes[0]!.add(batch);
    const lanes = batch.map((b) => laneOf(b.event.machine, b.event.entityId, this.lanes.length));
    // All in one lane (a single event always is): no split, no reassembly.
    if (lanes.every((l) => l === lanes[0])) return this.lanes[lanes[0]!]!.add(batch);
    const parts = this.lanes.map(() => ({ items: [] as BatchEvent[], at: [] as number[] }));
    batch.forEach((b, i) => {
      const part = parts[lanes[i]!]!;
      part.items.push(b);
      part.at.push(i);
    });
    const out = new Array<AppliedEvent>(batch.length);
    await Promise.all(
      parts.map(async (part, lane) => {
        if (part.items.length === 0) return;
        const applied = await this.lanes[lane]!.add(part.items);
        applied.forEach((a, j) => (out[part.at[j]!] = a));
      }),
    );
    return out;
  }

  private async applyTimed(items: BatchEvent[]): Promise<AppliedEvent[]> {
    const end = this.opts.metrics?.applySeconds.startTimer();
    try {
      return await this.opts.applier.apply(items);
    } finally {
      end?.();
      this.opts.metrics?.batchSize.observe(items.length);
    }
  }

  /** Starts taking jobs. */
  async start(): Promise<void> {
    const { connection, queueName, concurrency } = this.opts;
    this.worker = new Worker(queueName, (job, token) => this.process(job, token), {
      connection,
      concurrency: concurrency ?? 64,
      autorun: true,
      lockDuration: this.opts.lockDurationMs ?? 30_000,
      stalledInterval: this.opts.stalledIntervalMs ?? 30_000,
      maxStalledCount: this.opts.maxStalledCount ?? 10,
    });
    this.worker.on('error', (err) => this.opts.logger.error({ err }, 'worker error'));
    this.worker.on('failed', (job, err) => {
      if (job && !(err instanceof DelayedError)) {
        this.opts.logger.warn(
          { jobId: job.id, attemptsMade: job.attemptsMade, err: err.message },
          'job failed',
        );
      }
    });
    await this.worker.waitUntilReady();
  }

  private async process(job: Job, token: string | undefined): Promise<JobResult> {
    // A child logger per job costs more than a small job's processing: make it only to log.
    let child: Logger | undefined;
    const log = (): Logger => (child ??= this.opts.logger.child({ jobId: job.id }));
    let batch: BatchEvent[];
    let wait: boolean;
    try {
      const parsed = readJobData(job.data);
      wait = parsed.wait;
      const indexed = parsed.raw.length > 1;
      const { events } = this.opts.registry.validate(parsed.raw, parsed.source, indexed);
      const grants = parsed.mayWriteFor;
      batch = events.map((event) => ({
        event: grants.length > 0 ? { ...event, mayWriteFor: grants } : event,
        jobId: job.id ?? null,
      }));
    } catch (err) {
      if (err instanceof PromosyncError) {
        log().warn({ code: err.code, problems: err.problems }, 'rejected a bad job');
        this.opts.metrics?.outcomes.inc({
          machine: '',
          source: String((job.data as { source?: unknown })?.source ?? ''),
          outcome: 'invalid',
        });
        throw new UnrecoverableError(`${err.message}: ${JSON.stringify(err.problems)}`);
      }
      throw err;
    }

    let applied: AppliedEvent[];
    try {
      applied = await this.applyInLanes(batch);
    } catch (err) {
      if (isTransient(err) && token !== undefined) {
        // Postgres is away: come back later without spending an attempt.
        const delay = Math.min(
          this.opts.maxRetryDelayMs ?? 30_000,
          250 * 2 ** Math.min(job.attemptsStarted, 7),
        );
        log().warn({ err: String(err), delay }, 'database unavailable, job delayed');
        await job.moveToDelayed(Date.now() + delay, token);
        throw new DelayedError();
      }
      if (isDataError(err)) {
        // The batcher already isolated this job: its own data cannot be stored. Keep it in the failed set.
        log().warn({ err: String(err) }, 'job data cannot be stored');
        throw new UnrecoverableError(
          `data cannot be stored: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
      throw err;
    }

    const counts: Partial<Record<Outcome, number>> = {};
    const results: EventResult[] = [];
    // Metrics are counted per label set and added once per job, not once per event.
    const tally = new Map<string, { machine: string; source: string; outcome: string; n: number }>();
    const count = (machine: string, source: string, outcome: string): void => {
      const k = `${machine}\u0000${source}\u0000${outcome}`;
      const t = tally.get(k);
      if (t) t.n += 1;
      else tally.set(k, { machine, source, outcome, n: 1 });
    };
    applied.forEach((a, i) => {
      const e = batch[i]!.event;
      counts[a.outcome] = (counts[a.outcome] ?? 0) + 1;
      count(e.machine, e.source, a.outcome);
      if (a.anomaly) {
        count(e.machine, e.source, 'anomaly');
        log().warn(
          { machine: e.machine, entityId: e.entityId, eventId: e.eventId, type: e.type },
          'anomaly: applied a move the machine does not allow',
        );
      }
      if (a.outcome === 'conflict' || a.outcome === 'rejected') {
        const at = {
          machine: e.machine,
          entityId: e.entityId,
          eventId: e.eventId,
          type: e.type,
          reason: a.reason,
        };
        if (a.outcome === 'conflict') log().warn(at, 'conflict: an eventId seen before with other content');
        else log().info(at, 'rejected');
      } else if (a.actedFor !== undefined && a.actedFor !== e.source) {
        log().info(
          {
            machine: e.machine,
            entityId: e.entityId,
            eventId: e.eventId,
            owner: a.actedFor,
            outcome: a.outcome,
          },
          'admin event on an entity of another source',
        );
      }
      if (wait)
        results.push({
          eventId: e.eventId,
          entityId: e.entityId,
          outcome: a.outcome,
          anomaly: a.anomaly,
          state: a.status,
          ...(a.reason !== undefined ? { reason: a.reason } : {}),
        });
    });
    const outcomes = this.opts.metrics?.outcomes;
    if (outcomes)
      for (const t of tally.values())
        outcomes.inc({ machine: t.machine, source: t.source, outcome: t.outcome }, t.n);
    if (this.opts.logger.isLevelEnabled('debug')) log().debug({ counts }, 'job applied');
    return wait ? { counts, results } : { counts };
  }

  /** Stops taking jobs, finishes the ones in flight (their batches included) and closes. */
  async close(): Promise<void> {
    await this.worker?.close();
    await Promise.all(this.lanes.map((lane) => lane.close()));
  }
}

/** The lane of an entity: FNV-1a of its machine and id, so every process agrees. */
export function laneOf(machine: string, entityId: string, lanes: number): number {
  let h = 0x811c9dc5;
  const key = `${machine}\u0000${entityId}`;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % lanes;
}

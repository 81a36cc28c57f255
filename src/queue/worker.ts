import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { RedisConnection } from './redis.ts';
import type { Logger } from 'pino';
import { PromosyncError } from '../domain/index.ts';
import type { Outcome } from '../domain/index.ts';
import type { MachineRegistry } from '../domain/index.ts';
import type { AppliedEvent, BatchEvent } from '../store/index.ts';
import { isDataError, isTransient } from '../store/index.ts';
import type { CountedOutcome, Metrics } from '../observability/index.ts';
import { DEFAULTS } from '../config.ts';
import { Batcher } from './batcher.ts';
import { entityHash, partitionOf } from './partitions.ts';
import { readJobData, type EventResult, type JobResult } from './job.ts';

/** Anything that applies a batch: the store's Applier. */
export interface BatchApplier {
  /** `locks`: the apply locks the statement takes first (see {@link applyLocks}). */
  apply(batch: BatchEvent[], locks?: readonly number[]): Promise<AppliedEvent[]>;
}

export interface EventWorkerOptions {
  connection: RedisConnection;
  /**
   * The queues to consume: one BullMQ Worker each, all feeding the same lanes, so jobs of
   * every partition fold into the same batches (docs/operations.md, partitions).
   */
  queueNames: string[];
  registry: MachineRegistry;
  applier: BatchApplier;
  logger: Logger;
  metrics?: Metrics;
  /** Jobs processed at once. @defaultValue `DEFAULTS.workerConcurrency` (64) */
  concurrency?: number;
  /** Flush a batch at this many events. @defaultValue `DEFAULTS.batchMaxEvents` (2000) */
  batchMaxEvents?: number;
  /** …or this many ms after its first event. @defaultValue `DEFAULTS.batchFlushMs` (5) */
  batchFlushMs?: number;
  /**
   * Apply statements running at once per lane; work that arrives meanwhile grows the next batch.
   * @defaultValue `DEFAULTS.batchMaxInFlight` (1), which says why
   */
  batchMaxInFlight?: number;
  /**
   * Lanes: each entity belongs to one lane (by a hash of its id), each lane folds and applies
   * its own batches. Lanes never share an entity, so their statements never collide on a new
   * row, and several lanes keep several Postgres backends busy at once.
   * @defaultValue `DEFAULTS.batchLanes` (2)
   */
  lanes?: number;
  /**
   * Queue partitions of the deployment (`QUEUE_PARTITIONS`), for the apply locks. @defaultValue 1
   */
  partitions?: number;
  /** Longest delay between two tries while the database is unreachable. @defaultValue `DEFAULTS.maxRetryDelayMs` (30000) */
  maxRetryDelayMs?: number;
  /**
   * How long this worker's lock on a job lasts unless renewed (it renews at half that). A job
   * whose worker died is taken up again once its lock expired and a stalled check ran.
   * @defaultValue `DEFAULTS.workerLockDurationMs` (30000)
   */
  lockDurationMs?: number;
  /** How often to look for stalled jobs (their worker died) and queue them again. @defaultValue `DEFAULTS.workerStalledIntervalMs` (30000) */
  stalledIntervalMs?: number;
  /**
   * Times a job may stall before BullMQ fails it for good. Applying a job again is harmless
   * (idempotent, order-free), so this only needs to stop a job that keeps killing its worker;
   * BullMQ's own default of 1 would fail a job whose worker was killed twice.
   * @defaultValue `DEFAULTS.workerMaxStalledCount` (10)
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
  private workers: Worker[] = [];
  private readonly lanes: Batcher<BatchEvent, AppliedEvent>[];

  constructor(private readonly opts: EventWorkerOptions) {
    this.lanes = Array.from(
      { length: Math.max(1, opts.lanes ?? DEFAULTS.batchLanes) },
      (_, lane) =>
        new Batcher<BatchEvent, AppliedEvent>({
          maxItems: opts.batchMaxEvents,
          flushMs: opts.batchFlushMs,
          maxInFlight: opts.batchMaxInFlight,
          run: (items) => this.applyTimed(items, lane),
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

  private async applyTimed(items: BatchEvent[], lane: number): Promise<AppliedEvent[]> {
    const end = this.opts.metrics?.applySeconds.startTimer();
    try {
      return await this.opts.applier.apply(items, applyLocks(items, lane, this.opts.partitions ?? 1));
    } finally {
      end?.();
      this.opts.metrics?.batchSize.observe(items.length);
    }
  }

  /** Starts taking jobs from every queue. */
  async start(): Promise<void> {
    const { connection, queueNames, concurrency } = this.opts;
    for (const name of queueNames) {
      const worker = new Worker(name, (job, token) => this.process(job, token), {
        connection,
        concurrency: concurrency ?? DEFAULTS.workerConcurrency,
        autorun: true,
        lockDuration: this.opts.lockDurationMs ?? DEFAULTS.workerLockDurationMs,
        stalledInterval: this.opts.stalledIntervalMs ?? DEFAULTS.workerStalledIntervalMs,
        maxStalledCount: this.opts.maxStalledCount ?? DEFAULTS.workerMaxStalledCount,
      });
      worker.on('error', (err) => this.opts.logger.error({ err, queue: name }, 'worker error'));
      worker.on('failed', (job, err) => {
        if (job && !(err instanceof DelayedError)) {
          this.opts.logger.warn(
            { queue: name, jobId: job.id, attemptsMade: job.attemptsMade, err: err.message },
            'job failed',
          );
        }
      });
      this.workers.push(worker);
    }
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
  }

  private async process(job: Job, token: string | undefined): Promise<JobResult> {
    // A child logger per job costs more than a small job's processing: make it only to log.
    let child: Logger | undefined;
    const log: JobLog = () => (child ??= this.opts.logger.child({ jobId: job.id, queue: job.queueName }));
    const { batch, wait } = this.readJob(job, log);
    const applied = await this.applyOrDefer(job, token, batch, log);
    this.countOutcomes(batch, applied, log);
    const result = jobResult(batch, applied, wait);
    if (this.opts.logger.isLevelEnabled('debug')) log().debug({ counts: result.counts }, 'job applied');
    return result;
  }

  /**
   * The job's envelope and events, validated like the API validates a request.
   * @throws UnrecoverableError for a bad job: retrying cannot make it valid.
   */
  private readJob(job: Job, log: JobLog): { batch: BatchEvent[]; wait: boolean } {
    try {
      const envelope = readJobData(job.data);
      const { events } = this.opts.registry.validate(envelope.raw, envelope.source, envelope.indexed);
      const grants = envelope.mayWriteFor;
      const batch = events.map((event) => ({
        event: grants.length > 0 ? { ...event, mayWriteFor: grants } : event,
        jobId: job.id ?? null,
      }));
      return { batch, wait: envelope.wait };
    } catch (err) {
      if (!(err instanceof PromosyncError)) throw err;
      log().warn({ code: err.code, problems: err.problems }, 'rejected a bad job');
      const source = (job.data as { source?: unknown } | null)?.source;
      // A bad job counts once, under no machine; its source only if it is a valid one.
      this.opts.metrics?.countOutcome('', typeof source === 'string' ? source : '', 'invalid');
      throw new UnrecoverableError(`${err.message}: ${JSON.stringify(err.problems)}`);
    }
  }

  /**
   * Applies the job's events. While the database is unreachable the job is delayed with backoff
   * without spending an attempt; data the database refuses fails the job for good.
   */
  private async applyOrDefer(
    job: Job,
    token: string | undefined,
    batch: BatchEvent[],
    log: JobLog,
  ): Promise<AppliedEvent[]> {
    try {
      return await this.applyInLanes(batch);
    } catch (err) {
      if (isTransient(err) && token !== undefined) {
        const delay = Math.min(
          this.opts.maxRetryDelayMs ?? DEFAULTS.maxRetryDelayMs,
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
  }

  /**
   * Counts the outcomes (per label set, added once per job, not once per event) and logs
   * anomalies, conflicts, rejections and admin events on others' entities.
   */
  private countOutcomes(batch: BatchEvent[], applied: AppliedEvent[], log: JobLog): void {
    const tally = new Map<string, { machine: string; source: string; outcome: CountedOutcome; n: number }>();
    const count = (machine: string, source: string, outcome: CountedOutcome): void => {
      const k = `${machine}\u0000${source}\u0000${outcome}`;
      const t = tally.get(k);
      if (t) t.n += 1;
      else tally.set(k, { machine, source, outcome, n: 1 });
    };
    applied.forEach((a, i) => {
      const e = batch[i]!.event;
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
    });
    const metrics = this.opts.metrics;
    if (metrics) for (const t of tally.values()) metrics.countOutcome(t.machine, t.source, t.outcome, t.n);
  }

  /** Stops taking jobs, finishes the ones in flight (their batches included) and closes. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    await Promise.all(this.lanes.map((lane) => lane.close()));
  }
}

/** The job's logger, made on first use. */
type JobLog = () => Logger;

/** A job's return value: counts by outcome, and one result per event when the producer waits. */
function jobResult(batch: BatchEvent[], applied: AppliedEvent[], wait: boolean): JobResult {
  const counts: Partial<Record<Outcome, number>> = {};
  for (const a of applied) counts[a.outcome] = (counts[a.outcome] ?? 0) + 1;
  if (!wait) return { counts };
  const results: EventResult[] = applied.map((a, i) => {
    const e = batch[i]!.event;
    return {
      eventId: e.eventId,
      entityId: e.entityId,
      outcome: a.outcome,
      anomaly: a.anomaly,
      state: a.status,
      ...(a.reason !== undefined ? { reason: a.reason } : {}),
    };
  });
  return { counts, results };
}

/**
 * The apply locks of one lane's batch: one per queue partition its entities belong to, for
 * this lane (`partition × 1024 + lane`), sorted. Entities of one (partition, lane) belong to
 * that lock alone, in every worker process with the same settings, so statements that could
 * meet on an entity take the same lock first and run one after the other, instead of waiting
 * on each other's rows, aborting or deadlocking; statements of other lanes or partitions never
 * wait for it (docs/design.md#queue).
 */
export function applyLocks(items: readonly BatchEvent[], lane: number, partitions: number): number[] {
  if (partitions <= 1) return [lane];
  const seen = new Set<number>();
  for (const { event } of items)
    seen.add(partitionOf(event.machine, event.entityId, partitions) * 1024 + lane);
  return [...seen].sort((a, b) => a - b);
}

/** The lane of an entity: {@link entityHash} of its machine and id, so every process agrees. */
export function laneOf(machine: string, entityId: string, lanes: number): number {
  return entityHash(machine, entityId) % lanes;
}

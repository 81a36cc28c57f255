import { Queue, QueueEvents, type JobsOptions } from 'bullmq';
import type { EventInput } from '../domain/index.ts';
import { PromosyncError } from '../domain/index.ts';
import { DEFAULTS } from '../config.ts';
import type { EventResult, JobResult } from './job.ts';
import { groupByPartition, queueNamesOf } from './partitions.ts';
import { isCluster, type RedisConnection } from './redis.ts';

/**
 * {@link EventQueue.waitFor} stopped waiting before the job finished. The job is still queued
 * and will be applied; only the answer is not known yet.
 */
export class WaitTimeoutError extends Error {
  readonly code = 'wait_timeout';
  constructor(
    readonly jobId: string,
    timeoutMs: number,
    options?: { cause?: unknown },
  ) {
    super(`job ${jobId} did not finish within ${timeoutMs} ms`, options);
    this.name = 'WaitTimeoutError';
  }
}

export interface EventQueueOptions {
  connection: RedisConnection;
  /** The queue's name; with several partitions, the base their names are made from. */
  name: string;
  /**
   * Queues the events are spread over by entity ({@link partitionOf}); each is named by
   * {@link queueNameOf}. @defaultValue `DEFAULTS.queuePartitions` (1: the queue `name` itself)
   */
  partitions?: number;
  /** Attempts of each job; transient failures retry with exponential backoff. @defaultValue `DEFAULTS.jobAttempts` (25) */
  attempts?: number;
  /** First backoff delay, doubling each attempt. @defaultValue `DEFAULTS.jobBackoffMs` (500) */
  backoffMs?: number;
}

/** One job a request became: the queue it went to, its id there and how many events it carries. */
export interface QueuedJob {
  queue: string;
  jobId: string;
  accepted: number;
}

/**
 * The producer side of the `status-events` queue (or of its partitions), as the API uses it:
 * one job per partition a request touches, acknowledged once Redis has them all.
 */
export class EventQueue {
  /** One BullMQ queue per partition, in partition order. */
  readonly queues: Queue[];
  private readonly events = new Map<string, QueueEvents>();
  private readonly eventsConnections: RedisConnection[] = [];
  private readonly jobOptions: JobsOptions;
  private readonly partitions: number;

  constructor(private readonly opts: EventQueueOptions) {
    this.partitions = opts.partitions ?? DEFAULTS.queuePartitions;
    this.queues = queueNamesOf(opts.name, this.partitions).map((name) => {
      const queue = new Queue(name, { connection: opts.connection });
      queue.on('error', () => {}); // surfaced to callers through rejected adds
      return queue;
    });
    this.jobOptions = {
      attempts: opts.attempts ?? DEFAULTS.jobAttempts,
      backoff: { type: 'exponential', delay: opts.backoffMs ?? DEFAULTS.jobBackoffMs },
      removeOnComplete: { count: 1000, age: 3600 },
      removeOnFail: { age: 14 * 24 * 3600 },
    };
  }

  /** The queue of the first partition (the only one unless the queue is partitioned). */
  get queue(): Queue {
    return this.queues[0]!;
  }

  /**
   * Adds `events` from `source`, with the sending key's grants (`mayWriteFor`), as one job per
   * partition they fall in (in partition order); resolves once Redis acknowledged every job.
   * @throws PromosyncError `unavailable` when Redis cannot take one of them. Jobs of other
   * partitions may have been queued then; sending the request again is safe (idempotency).
   */
  async enqueue(
    events: EventInput[],
    source: string,
    wait = false,
    mayWriteFor: readonly string[] = [],
  ): Promise<QueuedJob[]> {
    const groups = groupByPartition(events, this.partitions);
    try {
      return await Promise.all(
        groups.map(async (g) => {
          const queue = this.queues[g.partition]!;
          const job = await queue.add(
            'events',
            {
              source,
              events: g.items,
              ...(wait ? { wait: true } : {}),
              ...(mayWriteFor.length > 0 ? { mayWriteFor } : {}),
            },
            this.jobOptions,
          );
          return { queue: queue.name, jobId: job.id!, accepted: g.items.length };
        }),
      );
    } catch (err) {
      throw new PromosyncError(
        'unavailable',
        this.partitions === 1
          ? 'the queue is unavailable; nothing was accepted, retry later'
          : 'the queue is unavailable; not all events were accepted, send them again later (repeats are harmless)',
        { cause: err },
      );
    }
  }

  /**
   * Waits until every job is processed and returns their results, each job's in its place:
   * `results` in the order of the events given to {@link enqueue}.
   * @throws WaitTimeoutError when one has not finished within `timeoutMs`; the error of a job that failed.
   */
  async waitForAll(jobs: QueuedJob[], events: EventInput[], timeoutMs: number): Promise<EventResult[]> {
    const groups = groupByPartition(events, this.partitions);
    const results = new Array<EventResult>(events.length);
    await Promise.all(
      jobs.map(async (job, i) => {
        const done = await this.waitFor(job.jobId, timeoutMs, job.queue);
        const at = groups[i]!.at;
        (done.results ?? []).forEach((r, j) => (results[at[j]!] = r));
      }),
    );
    return results.filter((r) => r !== undefined);
  }

  private queueEvents(name: string): QueueEvents {
    let events = this.events.get(name);
    if (!events) {
      const connection = duplicateForEvents(this.opts.connection);
      this.eventsConnections.push(connection);
      events = new QueueEvents(name, { connection });
      events.on('error', () => {});
      this.events.set(name, events);
    }
    return events;
  }

  /**
   * Waits until the job is processed and returns its result.
   * @throws WaitTimeoutError when it has not finished within `timeoutMs`; the error of the job when it failed.
   */
  async waitFor(jobId: string, timeoutMs: number, queueName: string = this.queue.name): Promise<JobResult> {
    const queue = this.queues.find((q) => q.name === queueName);
    if (!queue) throw new PromosyncError('internal', `no queue ${queueName}`);
    const events = this.queueEvents(queueName);
    await events.waitUntilReady();
    const job = await queue.getJob(jobId);
    if (!job) throw new PromosyncError('internal', `job ${jobId} disappeared before it finished`);
    try {
      return (await job.waitUntilFinished(events, timeoutMs)) as JobResult;
    } catch (err) {
      // BullMQ rejects a timeout with the same plain Error as a failure: ask the job which it was.
      const state = await job.getState();
      if (state === 'failed') throw err;
      if (state === 'completed') {
        const done = await queue.getJob(jobId);
        if (done) return done.returnvalue as JobResult;
      }
      throw new WaitTimeoutError(jobId, timeoutMs, { cause: err });
    }
  }

  /** Jobs by state, for metrics and readiness: per queue. */
  async counts(): Promise<Record<string, Record<string, number>>> {
    const all = await Promise.all(
      this.queues.map((q) =>
        q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized'),
      ),
    );
    return Object.fromEntries(this.queues.map((q, i) => [q.name, all[i]!]));
  }

  async close(): Promise<void> {
    await Promise.all([...this.events.values()].map((e) => e.close()));
    for (const c of this.eventsConnections) c.disconnect();
    await Promise.all(this.queues.map((q) => q.close()));
  }
}

/**
 * A connection for QueueEvents, which blocks reading the event stream: unlike the API's
 * fail-fast producer connection it waits for Redis to come back.
 */
function duplicateForEvents(connection: RedisConnection): RedisConnection {
  if (isCluster(connection)) {
    return connection.duplicate(undefined, {
      enableOfflineQueue: true,
      redisOptions: { ...connection.options.redisOptions, maxRetriesPerRequest: null },
    });
  }
  return connection.duplicate({ maxRetriesPerRequest: null, enableOfflineQueue: true });
}

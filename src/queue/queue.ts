import { Queue, QueueEvents, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { EventInput } from '../domain/index.ts';
import { PromosyncError } from '../domain/index.ts';
import { DEFAULTS } from '../config.ts';
import type { JobResult } from './job.ts';

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
  connection: Redis;
  name: string;
  /** Attempts of each job; transient failures retry with exponential backoff. @defaultValue `DEFAULTS.jobAttempts` (25) */
  attempts?: number;
  /** First backoff delay, doubling each attempt. @defaultValue `DEFAULTS.jobBackoffMs` (500) */
  backoffMs?: number;
}

/**
 * The producer side of the `status-events` queue, as the API uses it: one job per request,
 * acknowledged once Redis has it.
 */
export class EventQueue {
  readonly queue: Queue;
  private events: QueueEvents | undefined;
  private eventsConnection: Redis | undefined;
  private readonly jobOptions: JobsOptions;

  constructor(private readonly opts: EventQueueOptions) {
    this.queue = new Queue(opts.name, { connection: opts.connection });
    this.queue.on('error', () => {}); // surfaced to callers through rejected adds
    this.jobOptions = {
      attempts: opts.attempts ?? DEFAULTS.jobAttempts,
      backoff: { type: 'exponential', delay: opts.backoffMs ?? DEFAULTS.jobBackoffMs },
      removeOnComplete: { count: 1000, age: 3600 },
      removeOnFail: { age: 14 * 24 * 3600 },
    };
  }

  /**
   * Adds one job carrying `events` from `source`, with the sending key's grants
   * (`mayWriteFor`); resolves once Redis acknowledged it.
   * @throws PromosyncError `unavailable` when Redis cannot take it.
   */
  async enqueue(
    events: EventInput[],
    source: string,
    wait = false,
    mayWriteFor: readonly string[] = [],
  ): Promise<string> {
    try {
      const job = await this.queue.add(
        'events',
        {
          source,
          events,
          ...(wait ? { wait: true } : {}),
          ...(mayWriteFor.length > 0 ? { mayWriteFor } : {}),
        },
        this.jobOptions,
      );
      return job.id!;
    } catch (err) {
      throw new PromosyncError('unavailable', 'the queue is unavailable; nothing was accepted, retry later', {
        cause: err,
      });
    }
  }

  /**
   * Waits until the job is processed and returns its result.
   * @throws WaitTimeoutError when it has not finished within `timeoutMs`; the error of the job when it failed.
   */
  async waitFor(jobId: string, timeoutMs: number): Promise<JobResult> {
    if (!this.events) {
      this.eventsConnection = this.opts.connection.duplicate({
        maxRetriesPerRequest: null,
        enableOfflineQueue: true,
      });
      this.events = new QueueEvents(this.opts.name, { connection: this.eventsConnection });
      this.events.on('error', () => {});
    }
    await this.events.waitUntilReady();
    const job = await this.queue.getJob(jobId);
    if (!job) throw new PromosyncError('internal', `job ${jobId} disappeared before it finished`);
    try {
      return (await job.waitUntilFinished(this.events, timeoutMs)) as JobResult;
    } catch (err) {
      // BullMQ rejects a timeout with the same plain Error as a failure: ask the job which it was.
      const state = await job.getState();
      if (state === 'failed') throw err;
      if (state === 'completed') {
        const done = await this.queue.getJob(jobId);
        if (done) return done.returnvalue as JobResult;
      }
      throw new WaitTimeoutError(jobId, timeoutMs, { cause: err });
    }
  }

  /** Jobs by state, for metrics and readiness. */
  async counts(): Promise<Record<string, number>> {
    return this.queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized');
  }

  async close(): Promise<void> {
    await this.events?.close();
    this.eventsConnection?.disconnect();
    await this.queue.close();
  }
}
